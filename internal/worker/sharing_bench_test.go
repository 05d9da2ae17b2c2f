package worker_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// BenchmarkBusinessShares measures, at Sumsub's real 10 requests a second,
// the share of the records each business gets while others have work
// (API.md §4), in the load that starved a business before: A uploads one
// 600-record batch and, a second later, B uploads twenty of 30 records;
// then with weights 3 and 1; and how long a third business's 10-record
// batch, uploaded while those two saturate the rate, takes to complete.
func BenchmarkBusinessShares(b *testing.B) {
	b.Run("600 beside 20x30", func(b *testing.B) { benchmarkShares(b, 1, 1, 20) })
	b.Run("weights 3 and 1", func(b *testing.B) { benchmarkShares(b, 3, 1, 1) })
	b.Run("third business", benchmarkThirdBusiness)
}

// benchmarkShares reports A's share of the records in 30 s of both having work.
func benchmarkShares(b *testing.B, weightA, weightB, batchesB int) {
	const rows = 600
	var share float64
	for b.Loop() {
		e := apitest.New(b, apitest.Options{SumsubRate: 10})
		a, idsA := newFairBusiness(b, e, weightA, rows)
		bb, idsB := newFairBusiness(b, e, weightB, rows)
		e.StartWorker(b, time.Second)
		batches := []string{e.UploadBatch(b, a.key, apitest.CSVFile("a", idsA))}
		time.Sleep(time.Second)
		since := time.Now()
		per := rows / batchesB
		for i := range batchesB {
			batches = append(batches, e.UploadBatch(b, bb.key, apitest.CSVFile(fmt.Sprintf("b%d", i), idsB[i*per:(i+1)*per])))
		}
		processedOf(b, e, batches, 10+300, 2*time.Minute)
		share += shares(b, e, batches, since, time.Time{})[a.id].fraction()
		cancelAll(b, e, map[string]string{batches[0]: a.key}, bb.key, batches[1:])
	}
	b.ReportMetric(share/float64(b.N), "a-share")
}

// benchmarkThirdBusiness reports the third business's share while it had
// work and its batch's time from upload to completed.
func benchmarkThirdBusiness(b *testing.B) {
	var share float64
	var took time.Duration
	for b.Loop() {
		e := apitest.New(b, apitest.Options{SumsubRate: 10})
		a, idsA := newFairBusiness(b, e, 1, 300)
		bb, idsB := newFairBusiness(b, e, 1, 300)
		c, idsC := newFairBusiness(b, e, 1, 10)
		e.StartWorker(b, time.Second)
		large := []string{e.UploadBatch(b, a.key, apitest.CSVFile("a", idsA)), e.UploadBatch(b, bb.key, apitest.CSVFile("b", idsB))}
		processedOf(b, e, large, 30, time.Minute)
		since := time.Now()
		small := e.UploadBatch(b, c.key, apitest.CSVFile("c", idsC))
		final := e.WaitBatch(b, c.key, small, time.Minute)
		completed, err := time.Parse(time.RFC3339Nano, final["completedAt"].(string))
		if err != nil {
			b.Fatal(err)
		}
		took += completed.Sub(since)
		share += shares(b, e, append(large, small), since, completed)[c.id].fraction()
		cancelAll(b, e, map[string]string{large[0]: a.key, large[1]: bb.key}, "", nil)
	}
	b.ReportMetric(share/float64(b.N), "c-share")
	b.ReportMetric(took.Seconds()/float64(b.N), "c-done-s")
}

// BenchmarkEstimate measures how far a batch's estimatedCompletionAt, read
// when 10% and when 50% of its records are done, lands from its real
// completion, in a mixed load at 10 requests a second: the target batch (200
// records, business X) beside X's own 50-record batch, Y's 150 and 100, and
// Z's 400 at weight 2. The error is (estimate − completion) ÷ the time left
// when the estimate was read.
func BenchmarkEstimate(b *testing.B) {
	var at10, at50 float64
	for b.Loop() {
		e := apitest.New(b, apitest.Options{SumsubRate: 10})
		x, idsX := newFairBusiness(b, e, 1, 250)
		y, idsY := newFairBusiness(b, e, 1, 250)
		z, idsZ := newFairBusiness(b, e, 2, 400)
		target := e.UploadBatch(b, x.key, apitest.CSVFile("target", idsX[:200]))
		e.UploadBatch(b, x.key, apitest.CSVFile("x", idsX[200:]))
		e.UploadBatch(b, y.key, apitest.CSVFile("y1", idsY[:150]))
		e.UploadBatch(b, y.key, apitest.CSVFile("y2", idsY[150:]))
		e.UploadBatch(b, z.key, apitest.CSVFile("z", idsZ))
		e.StartWorker(b, time.Second)
		type reading struct{ at, estimate time.Time }
		read := func(fraction float64) reading {
			for {
				st := e.Call(b, http.MethodGet, "/entity/kyc/import/batch/"+target, x.key, nil).JSON(b)
				if st["processedRecords"].(float64) >= fraction*200 {
					est, err := time.Parse(time.RFC3339Nano, st["estimatedCompletionAt"].(string))
					if err != nil {
						b.Fatal(err)
					}
					return reading{time.Now(), est}
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		r10, r50 := read(0.1), read(0.5)
		final := e.WaitBatch(b, x.key, target, 5*time.Minute)
		done, err := time.Parse(time.RFC3339Nano, final["completedAt"].(string))
		if err != nil {
			b.Fatal(err)
		}
		relErr := func(r reading) float64 { return r.estimate.Sub(done).Seconds() / done.Sub(r.at).Seconds() }
		at10 += relErr(r10)
		at50 += relErr(r50)
		b.Logf("completed %s; at 10%%: estimate %s off; at 50%%: %s off", done.Format(time.TimeOnly),
			r10.estimate.Sub(done).Round(100*time.Millisecond), r50.estimate.Sub(done).Round(100*time.Millisecond))
	}
	b.ReportMetric(100*at10/float64(b.N), "error-at-10%-pct")
	b.ReportMetric(100*at50/float64(b.N), "error-at-50%-pct")
}

// BenchmarkBatch5000 measures a 5,000-record batch from upload to completed
// at Sumsub's 10 requests a second, the whole service alone: 500 s is the
// limit itself.
func BenchmarkBatch5000(b *testing.B) {
	var took time.Duration
	for b.Loop() {
		e := apitest.New(b, apitest.Options{SumsubRate: 10})
		key, business := e.Business(b)
		ids := entities(b, e, business, 5000)
		e.StartWorker(b, time.Second)
		batch := e.UploadBatch(b, key, apitest.CSVFile("5000", ids))
		final := e.WaitBatch(b, key, batch, 15*time.Minute)
		created, err1 := time.Parse(time.RFC3339Nano, final["createdAt"].(string))
		completed, err2 := time.Parse(time.RFC3339Nano, final["completedAt"].(string))
		if err1 != nil || err2 != nil || final["failedRecords"] != float64(0) {
			b.Fatalf("batch: %v", final)
		}
		took += completed.Sub(created)
	}
	b.ReportMetric(took.Seconds()/float64(b.N), "upload-to-completed-s")
}
