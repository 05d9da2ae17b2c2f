package reports

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/heaptest"
	"github.com/kycbatch/kycbatch/internal/testing/s3test"
)

// BenchmarkBuildReport builds the reports of a 5,000- and a 50,000-record
// batch (mixed outcomes) into S3 and reports the median build time (ms-p50)
// besides the mean, the bytes allocated per record and the peak growth of the
// heap in use: the build streams, so the peak does not grow with the batch (it
// holds the upload's 5 MiB part buffers and the garbage between collections).
// It also reports the largest growth of the process's resident set during a
// build (rss-growth-MB), kept by the kernel, so it counts what the heap
// figures do not (memory the runtime has not returned, stacks) and misses no
// short spike; where /proc/self/clear_refs cannot be written that metric is
// left out.
func BenchmarkBuildReport(b *testing.B) {
	for _, n := range []int{5000, 50000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) { benchmarkBuildReport(b, n) })
	}
}

func benchmarkBuildReport(b *testing.B, n int) {
	ctx := context.Background()
	pool := dbtest.Pool(b)
	business, batch := uuid.New(), uuid.New()
	if _, err := pool.Exec(ctx, `INSERT INTO businesses (id, name) VALUES ($1, 'bench')`, business); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO batches (id, business_id, idempotency_key, provider, status, total_records, file_key, file_size, file_sha256)
		VALUES ($2, $1, 'bench', 'sumsub', 'completed', $3, 'x', 0, '')`, business, batch, n); err != nil {
		b.Fatal(err)
	}
	_, err := pool.Exec(ctx, `
		INSERT INTO batch_records (batch_id, row_number, external_id, status, attempts, applicant_id, review_status,
			error_code, error_message, processed_at)
		SELECT $1, g + 1, gen_random_uuid(),
			CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'succeeded' END, 1 + g % 3,
			CASE WHEN g % 10 = 0 THEN NULL ELSE md5(g::text) END,
			CASE WHEN g % 10 = 0 THEN NULL ELSE 'completed' END,
			CASE WHEN g % 10 = 0 THEN 'SUMSUB_INVALID_SHARE_TOKEN' END,
			CASE WHEN g % 10 = 0 THEN 'Share token is invalid or has been used' END,
			now()
		FROM generate_series(1, $2) g`, batch, n)
	if err != nil {
		b.Fatal(err)
	}
	// versitygw runs in its own process: the heap measured is the builder's alone.
	builder := NewBuilder(BuilderConfig{Pool: pool, Files: s3test.Versitygw(b), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})

	var rss heaptest.RSS
	rssOK := true
	if err := rss.ResetPeak(); err != nil {
		rssOK = false
		b.Logf("no rss-growth-MB: %v", err)
	}

	var (
		took      []time.Duration
		rssGrowth int64
	)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	growth := heaptest.PeakGrowth(func() {
		for b.Loop() {
			var rssBefore int64
			if rssOK {
				b.StopTimer()
				rssBefore = resetRSS(b, rss)
				b.StartTimer()
			}
			start := time.Now()
			r := Report{ID: newID(), BusinessID: business, BatchID: batch}
			stats, err := builder.build(ctx, r, "reports/bench/"+r.ID+".csv")
			if err != nil {
				b.Fatal(err)
			}
			took = append(took, time.Since(start))
			if stats.Available+stats.Failed != n {
				b.Fatalf("stats %+v", stats)
			}
			if rssOK {
				b.StopTimer()
				peak, err := rss.Peak()
				if err != nil {
					b.Fatal(err)
				}
				rssGrowth = max(rssGrowth, peak-rssBefore)
				b.StartTimer()
			}
		}
	})
	b.StopTimer()
	runtime.ReadMemStats(&after)
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N*n), "B/record")
	b.ReportMetric(float64(growth)/(1<<20), "MB-peak-heap-growth")
	if rssOK {
		b.ReportMetric(float64(rssGrowth)/(1<<20), "rss-growth-MB")
	}
}

// resetRSS resets the kernel's peak of the resident set and returns the
// current resident set, the base of a build's growth.
func resetRSS(tb testing.TB, rss heaptest.RSS) int64 {
	tb.Helper()
	if err := rss.ResetPeak(); err != nil {
		tb.Fatal(err)
	}
	n, err := rss.Current()
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
