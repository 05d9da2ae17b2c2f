package imports

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
)

// TestGroupedOutcomes: outcomes stored at once by two workers' groupers,
// from many goroutines, each end their record once; the counters match the
// records, the entities have their applicants, an outcome of a record
// already final changes nothing, and every batch is found done.
func TestGroupedOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	const perBatch = 150
	business := uuid.New()
	batches := []uuid.UUID{uuid.New(), uuid.New()}
	if _, err := pool.Exec(ctx, `INSERT INTO businesses (id, name) VALUES ($1, 'grouped')`, business); err != nil {
		t.Fatal(err)
	}
	var list []ingest.Final
	for _, batch := range batches {
		_, err := pool.Exec(ctx, `
			WITH batch AS (
				INSERT INTO batches (id, business_id, idempotency_key, provider, status, total_records, file_key, file_size, file_sha256)
				VALUES ($2, $1, $4, 'sumsub', 'in_progress', $3, 'x', 0, '')),
			records AS (
				INSERT INTO batch_records (batch_id, row_number, external_id, share_token, attempts, last_attempt_at)
				SELECT $2, n + 2, gen_random_uuid(), 'tok', 1, now() FROM generate_series(0, $3 - 1) n
				RETURNING external_id)
			INSERT INTO entities (id, business_id, external_id, type)
			SELECT gen_random_uuid(), $1, external_id, 'INDIVIDUAL' FROM records`, business, batch, perBatch, batch.String())
		if err != nil {
			t.Fatal(err)
		}
		rows, err := pool.Query(ctx, `SELECT row_number, external_id FROM batch_records WHERE batch_id = $1`, batch)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			c := ingest.Claimed{Ref: ingest.Ref{Batch: batch}, BusinessID: business}
			if err := rows.Scan(&c.Row, &c.ExternalID); err != nil {
				t.Fatal(err)
			}
			f := ingest.Final{Batch: batch, Row: c.Row, Claimed: &c, KYCStatus: "PENDING",
				Outcome: ingest.Outcome{Status: ingest.RecordSucceeded, ApplicantID: fmt.Sprintf("app-%s-%d", batch, c.Row), ReviewStatus: "init"}}
			if c.Row%3 == 0 {
				f.Outcome = ingest.Outcome{Status: ingest.RecordFailed, ErrorCode: "SUMSUB_X", ErrorMessage: "refused"}
			}
			list = append(list, f)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Row 2 of the first batch is final already: its outcome is not stored.
	if _, err := pool.Exec(ctx, `WITH r AS (UPDATE batch_records SET status = 'cancelled' WHERE batch_id = $1 AND row_number = 2)
		INSERT INTO batch_counters (batch_id, slot, cancelled) VALUES ($1, 2, 1)`, batches[0]); err != nil {
		t.Fatal(err)
	}

	store := func(ctx context.Context, list []ingest.Final) ([]ingest.Stored, error) {
		return ingest.StoreOutcomes(ctx, pool, list)
	}
	workers := []*group[ingest.Final, ingest.Stored]{{run: store}, {run: store}}
	results := make([]ingest.Stored, len(list))
	var wg sync.WaitGroup
	for i := range list {
		wg.Go(func() {
			res, err := workers[i%2].do(ctx, list[i])
			if err != nil {
				t.Errorf("store row %d: %v", list[i].Row, err)
			}
			results[i] = res
		})
	}
	wg.Wait()

	done := map[uuid.UUID]bool{}
	for i, res := range results {
		first := list[i].Batch == batches[0] && list[i].Row == 2
		if res.Stored == first {
			t.Errorf("batch %s row %d: stored %v", list[i].Batch, list[i].Row, res.Stored)
		}
		done[list[i].Batch] = done[list[i].Batch] || res.BatchDone
	}
	for _, batch := range batches {
		if !done[batch] {
			t.Errorf("batch %s: no outcome found it done", batch)
		}
		var mismatch, linked, pending int
		err := pool.QueryRow(ctx, `
			SELECT (SELECT (count(*) FILTER (WHERE status = 'succeeded') <> (SELECT sum(succeeded) FROM batch_counters WHERE batch_id = $1)
				OR count(*) FILTER (WHERE status = 'failed') <> (SELECT sum(failed) FROM batch_counters WHERE batch_id = $1))::int
				FROM batch_records WHERE batch_id = $1),
			(SELECT count(*) FROM batch_records r JOIN entities e ON e.external_id = r.external_id
				WHERE r.batch_id = $1 AND r.status = 'succeeded' AND e.sumsub_applicant_id = r.applicant_id),
			(SELECT count(*) FROM batch_records WHERE batch_id = $1 AND status = 'pending')`, batch).Scan(&mismatch, &linked, &pending)
		if err != nil {
			t.Fatal(err)
		}
		if mismatch != 0 || pending != 0 {
			t.Errorf("batch %s: counters differ from the records (%d), %d records pending", batch, mismatch, pending)
		}
		if want := perBatch - perBatch/3; linked != want-map[bool]int{true: 1}[batch == batches[0]] {
			t.Errorf("batch %s: %d entities linked to their records' applicants, want %d", batch, linked, want)
		}
	}
}
