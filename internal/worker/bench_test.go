package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
	"github.com/kycbatch/kycbatch/internal/testing/cputest"
)

// BenchmarkPipelineCeiling measures how fast the whole pipeline (the
// schedule, the feeder, Asynq's record tasks, the claims, the limiter, the
// Sumsub client and the outcomes' transactions) turns records into imports
// when Sumsub is not what holds it back (limit 5,000/s, no latency), and the
// CPU every process spends per record (cputest: run it alone).
func BenchmarkPipelineCeiling(b *testing.B) {
	benchPipeline(b, apitest.Options{})
}

// BenchmarkPipelineThroughPgBouncer is the ceiling's pipeline with the API
// and the worker connected through PgBouncer in transaction pooling mode
// (pgx's cache_describe: no named prepared statements). PgBouncer's own CPU
// is not in cpu-ms/record.
func BenchmarkPipelineThroughPgBouncer(b *testing.B) {
	benchPipeline(b, apitest.Options{PgBouncer: true})
}

// benchPipeline runs 5,000-record batches through the pipeline at a limit
// of 5,000/s on the production pool and reports records/s and CPU per
// record.
func benchPipeline(b *testing.B, opts apitest.Options) {
	const n, rate = 5000, 5000
	opts.SumsubRate, opts.ProductionPool = rate, true
	e := apitest.New(b, opts)
	key, business := e.Business(b)
	ids := entities(b, e, business, n)

	var pipeline time.Duration
	var cpu cputest.Sample
	for i := 0; b.Loop(); i++ {
		// The upload is not timed: the worker is not running yet, and the
		// figure is the pipeline's, from its start to the batch completed.
		batchID := e.UploadBatch(b, key, apitest.CSVFile(fmt.Sprintf("ceiling%d", i), ids))
		before, err := cputest.Take(0)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		stop := e.StartWorker(b, 5*time.Second)
		final := e.WaitBatch(b, key, batchID, 10*time.Minute)
		stop()
		after, err := cputest.Take(0)
		if err != nil {
			b.Fatal(err)
		}
		cpu = cpu.Add(after.Sub(before))
		if final["status"] != "completed" || final["failedRecords"] != float64(0) {
			b.Fatalf("batch: %v", final)
		}
		// completedAt is stamped by the transaction of the last record: the
		// end without the polling's granularity (one clock: this machine's).
		completed, err := time.Parse(time.RFC3339Nano, final["completedAt"].(string))
		if err != nil {
			b.Fatal(err)
		}
		pipeline += completed.Sub(start)
	}
	records := float64(n*b.N) / pipeline.Seconds()
	b.ReportMetric(records, "records/s")
	// Every process's CPU (this one: API, worker, simulator; PostgreSQL;
	// Redis) over the pipeline's runs, per record, and each one's part.
	perRecord := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(n*b.N) }
	b.ReportMetric(perRecord(cpu.Total()), "cpu-ms/record")
	b.ReportMetric(perRecord(cpu.Process), "go-cpu-ms/record")
	b.ReportMetric(perRecord(cpu.Postgres), "pg-cpu-ms/record")
	b.ReportMetric(perRecord(cpu.Redis), "redis-cpu-ms/record")
}

// BenchmarkFairness measures how long a 10-record batch takes, from its
// upload to its completion, while a 5,000-record batch of the same business
// is running at Sumsub's real limit of 10 requests a second: within a
// business, the batch with the fewest records left goes first.
func BenchmarkFairness(b *testing.B) {
	const rate = 10
	e := apitest.New(b, apitest.Options{SumsubRate: rate})
	key, business := e.Business(b)
	largeIDs := entities(b, e, business, 5000)
	smallIDs := entities(b, e, business, 10)

	var took time.Duration
	for i := 0; b.Loop(); i++ {
		large := e.UploadBatch(b, key, apitest.CSVFile(fmt.Sprintf("large%d", i), largeIDs))
		stop := e.StartWorker(b, time.Second)
		waitProcessed(b, e, key, large, 20, time.Minute)

		start := time.Now()
		small := e.UploadBatch(b, key, apitest.CSVFile(fmt.Sprintf("small%d", i), smallIDs))
		final := e.WaitBatch(b, key, small, 5*time.Minute)
		took += time.Since(start)
		if final["status"] != "completed" {
			b.Fatalf("small batch: %v", final)
		}

		// The large batch would run for 8 minutes more: cancel it.
		if r := e.Call(b, http.MethodPost, "/entity/kyc/import/batch/"+large+"/cancel", key, nil); r.Status != http.StatusOK {
			b.Fatalf("cancel: %d %s", r.Status, r.Body)
		}
		stop()
	}
	b.ReportMetric(took.Seconds()/float64(b.N), "small-batch-s")
}

// BenchmarkStartFromIdle measures how soon a record uploaded to an idle
// service is claimed for its Sumsub call: from the batch's creation to its
// start, both stamped by PostgreSQL, with the worker idle for 3 s before
// each upload. An idle worker asks the schedule only every 5 s by itself: a
// start well within that is the upload waking it.
func BenchmarkStartFromIdle(b *testing.B) {
	e := apitest.New(b, apitest.Options{SumsubRate: 10})
	key, business := e.Business(b)
	ids := entities(b, e, business, 1)
	e.StartWorker(b, time.Second)
	var total, most float64
	for i := 0; b.Loop(); i++ {
		time.Sleep(3 * time.Second)
		batch := e.UploadBatch(b, key, apitest.CSVFile(fmt.Sprintf("idle%d", i), ids))
		if final := e.WaitBatch(b, key, batch, time.Minute); final["status"] != "completed" {
			b.Fatalf("batch: %v", final)
		}
		var seconds float64
		err := e.Pool.QueryRow(context.Background(),
			`SELECT extract(epoch FROM started_at - created_at) FROM batches WHERE id = $1`, batch).Scan(&seconds)
		if err != nil {
			b.Fatal(err)
		}
		total, most = total+seconds, max(most, seconds)
	}
	b.ReportMetric(total*1000/float64(b.N), "ms-to-start")
	b.ReportMetric(most*1000, "ms-to-start-max")
}

// entities creates n entities of the business in one statement and returns
// their external ids: e.Entities's n requests would take longer than the
// benchmarks' runs.
func entities(b testing.TB, e *apitest.Env, business uuid.UUID, n int) []uuid.UUID {
	b.Helper()
	ids := make([]uuid.UUID, n)
	external := make([]string, n)
	for i := range ids {
		ids[i] = uuid.New()
		external[i] = ids[i].String()
	}
	_, err := e.Pool.Exec(context.Background(), `
		INSERT INTO entities (id, business_id, external_id, type)
		SELECT gen_random_uuid(), $1, x, 'INDIVIDUAL' FROM unnest($2::uuid[]) AS x`,
		business.String(), external)
	if err != nil {
		b.Fatal(err)
	}
	return ids
}

// waitProcessed polls the batch until it has processed at least n records.
func waitProcessed(b testing.TB, e *apitest.Env, key, batchID string, n int, timeout time.Duration) {
	b.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		r := e.Call(b, http.MethodGet, "/entity/kyc/import/batch/"+batchID, key, nil)
		if r.Status != http.StatusOK {
			b.Fatalf("batch status: %d %s", r.Status, r.Body)
		}
		body := r.JSON(b)
		if processed, _ := body["processedRecords"].(float64); processed >= float64(n) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("batch %s processed fewer than %d records in %s: %s", batchID, n, timeout, r.Body)
		}
	}
}
