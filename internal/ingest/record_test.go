package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
)

// TestClaim: while one task's call for a record is unanswered, a second task
// for the record (the reconciler's, after Redis lost the first) cannot claim
// it until the answer is stored or the lease is over.
func TestClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	business, batch := uuid.New(), uuid.New()
	_, err := pool.Exec(ctx, `
		WITH b AS (INSERT INTO businesses (id, name) VALUES ($1, 'lease')),
		batch AS (
			INSERT INTO batches (id, business_id, idempotency_key, provider, status, total_records, file_key, file_size, file_sha256)
			VALUES ($2, $1, 'lease', 'sumsub', 'in_progress', 1, 'x', 0, '')),
		entity AS (INSERT INTO entities (id, business_id, external_id, type) VALUES (gen_random_uuid(), $1, $3, 'INDIVIDUAL'))
		INSERT INTO batch_records (batch_id, row_number, external_id, share_token) VALUES ($2, 2, $3, 'tok')`, business, batch, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	s := records{pool: pool}
	claim := func(lease time.Duration) int {
		t.Helper()
		c, ok, err := s.claim(ctx, batch, 2, lease)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return 0
		}
		return c.Attempt
	}
	leaseLeft := func(lease time.Duration) time.Duration {
		t.Helper()
		rec, err := s.record(ctx, batch, 2, lease)
		if err != nil {
			t.Fatal(err)
		}
		return rec.LeaseLeft
	}

	if attempt := claim(time.Minute); attempt != 1 {
		t.Fatalf("first claim: attempt %d, want 1", attempt)
	}
	if attempt, left := claim(time.Minute), leaseLeft(time.Minute); attempt != 0 || left < 59*time.Second || left > time.Minute {
		t.Fatalf("second task while the first call is unanswered: attempt %d, lease left %s; want unclaimed, about a minute left", attempt, left)
	}
	if err := s.markAnswered(ctx, batch, 2); err != nil {
		t.Fatal(err)
	}
	if left := leaseLeft(time.Minute); left != 0 {
		t.Fatalf("answered: lease left %s, want 0", left)
	}
	if attempt := claim(time.Minute); attempt != 2 {
		t.Fatalf("after the answer: attempt %d, want 2", attempt)
	}
	// Unanswered, but older than the lease: that call is over (its worker died).
	if attempt := claim(0); attempt != 3 {
		t.Fatalf("after the lease: attempt %d, want 3", attempt)
	}
}

// TestReviewBeforeLink: a review webhook that comes before the worker links
// its applicant (Sumsub can be faster than our own commit) is applied when
// the link is stored, instead of the import's pending status.
func TestReviewBeforeLink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	business, batch, external := uuid.New(), uuid.New(), uuid.New()
	_, err := pool.Exec(ctx, `
		WITH b AS (INSERT INTO businesses (id, name) VALUES ($1, 'early')),
		batch AS (
			INSERT INTO batches (id, business_id, idempotency_key, provider, status, total_records, file_key, file_size, file_sha256)
			VALUES ($2, $1, 'early', 'sumsub', 'in_progress', 1, 'x', 0, '')),
		entity AS (INSERT INTO entities (id, business_id, external_id, type) VALUES (gen_random_uuid(), $1, $3, 'INDIVIDUAL')),
		review AS (INSERT INTO sumsub_reviews (applicant_id, event_key, review_answer, reviewed_at) VALUES ('app-early', 'req-1', 'RED', now()))
		INSERT INTO batch_records (batch_id, row_number, external_id, share_token, queued_at) VALUES ($2, 2, $3, 'tok', now())`,
		business, batch, external)
	if err != nil {
		t.Fatal(err)
	}
	s := records{pool: pool}
	o := outcome{Status: "succeeded", ApplicantID: "app-early", ReviewStatus: "pending", KYCStatus: "PENDING"}
	if _, done, err := s.finish(ctx, batch, 2, &claimed{BusinessID: business, ExternalID: external}, o, 1); err != nil || !done {
		t.Fatalf("finish: done %v, %v", done, err)
	}
	var status string
	if err := pool.QueryRow(ctx, `SELECT kyc_status FROM entities WHERE external_id = $1`, external).Scan(&status); err != nil {
		t.Fatal(err)
	}
	if status != "REJECTED" {
		t.Errorf("entity is %s, want REJECTED: the review recorded before the link", status)
	}
	var review, answer string
	if err := pool.QueryRow(ctx, `SELECT review_status, review_answer FROM batch_records WHERE batch_id = $1`, batch).Scan(&review, &answer); err != nil {
		t.Fatal(err)
	}
	if review != "completed" || answer != "RED" {
		t.Errorf("record's review: %s %s, want completed RED", review, answer)
	}
}
