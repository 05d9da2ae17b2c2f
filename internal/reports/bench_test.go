package reports

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/database/dbtest"
	"github.com/kycbatch/kycbatch/internal/heaptest"
	"github.com/kycbatch/kycbatch/internal/storage/s3test"
)

// BenchmarkBuildReport builds the reports of a 5,000- and a 50,000-record
// batch (mixed outcomes) into S3 and reports the bytes allocated per record
// and the peak growth of the heap in use: the build streams, so the peak does
// not grow with the batch (it holds the upload's 5 MiB part buffers and the
// garbage between collections).
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
	store := NewStore(pool)
	// versitygw runs in its own process: the heap measured is the builder's alone.
	builder := NewBuilder(store, s3test.Versitygw(b), nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	growth := heaptest.PeakGrowth(func() {
		for b.Loop() {
			r, err := store.create(ctx, business, batch)
			if err != nil {
				b.Fatal(err)
			}
			stats, err := builder.build(ctx, r, "reports/bench/"+r.ID+".csv")
			if err != nil {
				b.Fatal(err)
			}
			if stats.Available+stats.Failed != n {
				b.Fatalf("stats %+v", stats)
			}
		}
	})
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N*n), "B/record")
	b.ReportMetric(float64(growth)/(1<<20), "MB-peak-heap-growth")
}
