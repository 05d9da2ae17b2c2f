package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/database/dbtest"
)

// TestAttemptLease: while one task's call for a record is unanswered, a second
// task for the record (the reconciler's, after Redis lost the first) is told
// to wait, until the answer is stored or the lease is over.
func TestAttemptLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	business, batch := uuid.New(), uuid.New()
	_, err := pool.Exec(ctx, `
		WITH b AS (INSERT INTO businesses (id, name) VALUES ($1, 'lease')),
		batch AS (
			INSERT INTO batches (id, business_id, idempotency_key, provider, status, total_records, file_key, file_size, file_sha256)
			VALUES ($2, $1, 'lease', 'sumsub', 'in_progress', 1, 'x', 0, ''))
		INSERT INTO batch_records (batch_id, row_number, external_id, share_token) VALUES ($2, 2, gen_random_uuid(), 'tok')`, business, batch)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(pool)
	mark := func(lease time.Duration) (int, time.Duration) {
		t.Helper()
		attempt, busy, err := s.markAttempt(ctx, batch, 2, lease)
		if err != nil {
			t.Fatal(err)
		}
		return attempt, busy
	}

	if attempt, busy := mark(time.Minute); attempt != 1 || busy != 0 {
		t.Fatalf("first attempt: %d, busy %s; want 1, not busy", attempt, busy)
	}
	if attempt, busy := mark(time.Minute); attempt != 0 || busy < 59*time.Second || busy > time.Minute {
		t.Fatalf("second task while the first call is unanswered: attempt %d, busy %s; want told to wait about a minute", attempt, busy)
	}
	if err := s.markAnswered(ctx, batch, 2); err != nil {
		t.Fatal(err)
	}
	if attempt, busy := mark(time.Minute); attempt != 2 || busy != 0 {
		t.Fatalf("after the answer: attempt %d, busy %s; want 2", attempt, busy)
	}
	// Unanswered, but older than the lease: that call is over (its worker died).
	if attempt, busy := mark(0); attempt != 3 || busy != 0 {
		t.Fatalf("after the lease: attempt %d, busy %s; want 3", attempt, busy)
	}
	if _, err := pool.Exec(ctx, `UPDATE batches SET status = 'cancelled' WHERE id = $1`, batch); err != nil {
		t.Fatal(err)
	}
	if attempt, busy := mark(0); attempt != 0 || busy != 0 {
		t.Fatalf("cancelled batch: attempt %d, busy %s; want nothing to send", attempt, busy)
	}
}
