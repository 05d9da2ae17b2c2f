package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
)

// TestClaim: a claim takes the batch's first record that may be sent now,
// and starts the batch; a record whose call is in flight, or that waits out
// a retry, is not taken until its lease or its retry is over; a 429 is not
// an attempt.
func TestClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	business, batch := uuid.New(), uuid.New()
	_, err := pool.Exec(ctx, `
		WITH b AS (INSERT INTO businesses (id, name) VALUES ($1, 'lease')),
		batch AS (
			INSERT INTO batches (id, business_id, idempotency_key, provider, total_records, file_key, file_size, file_sha256)
			VALUES ($2, $1, 'lease', 'sumsub', 2, 'x', 0, ''))
		INSERT INTO batch_records (batch_id, row_number, external_id, share_token)
		VALUES ($2, 2, gen_random_uuid(), 'tok2'), ($2, 3, gen_random_uuid(), 'tok3')`, business, batch)
	if err != nil {
		t.Fatal(err)
	}
	s := records{pool: pool}
	type got struct{ Row, Attempt, Refusals int }
	claim := func(lease time.Duration) *got {
		t.Helper()
		c, ok, err := s.claim(ctx, batch, 0, lease)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return nil
		}
		if c.BusinessID != business || c.BatchID != batch {
			t.Errorf("claimed %+v, want business %s and batch %s", c, business, batch)
		}
		return &got{c.Row, c.Attempt, c.Refusals}
	}
	check := func(what string, g, want *got) {
		t.Helper()
		if diff := cmp.Diff(want, g); diff != "" {
			t.Fatalf("%s (-want +got):\n%s", what, diff)
		}
	}
	eligible := func(want int) {
		t.Helper()
		if n, err := s.eligible(ctx, batch, time.Minute); err != nil || n != want {
			t.Fatalf("eligible = %d, %v; want %d", n, err, want)
		}
	}

	eligible(2)
	check("first claim", claim(time.Minute), &got{2, 1, 0})
	var status string
	if err := pool.QueryRow(ctx, `SELECT status FROM batches WHERE id = $1`, batch).Scan(&status); err != nil || status != "in_progress" {
		t.Fatalf("batch is %q (%v) after its first claim, want in_progress", status, err)
	}
	check("second claim, the first record in flight", claim(time.Minute), &got{3, 1, 0})
	check("both in flight", claim(time.Minute), nil)
	eligible(0)

	// Row 2: Sumsub answered 503, retry in an hour. Row 3: 429, retry now.
	if err := s.retryLater(ctx, &claimed{BatchID: batch, Row: 2}, unused, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.retryLater(ctx, &claimed{BatchID: batch, Row: 3}, refused, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	eligible(1)
	check("after a 429: the same attempt again", claim(time.Minute), &got{3, 1, 1})
	check("the other waits out its retry", claim(time.Minute), nil)
	// Unanswered, but older than the lease: that call is over (its worker died).
	check("after the lease", claim(0), &got{3, 2, 1})
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
		INSERT INTO batch_records (batch_id, row_number, external_id, share_token, attempts, last_attempt_at)
		VALUES ($2, 2, $3, 'tok', 1, now())`,
		business, batch, external)
	if err != nil {
		t.Fatal(err)
	}
	s := records{pool: pool}
	o := outcome{Status: "succeeded", ApplicantID: "app-early", ReviewStatus: "pending", KYCStatus: "PENDING"}
	c := &claimed{BatchID: batch, Row: 2, BusinessID: business, ExternalID: external}
	if done, err := s.finish(ctx, batch, 2, c, o); err != nil || !done {
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
	// A second finish of the record (an answer stored twice) changes nothing.
	if done, err := s.finish(ctx, batch, 2, c, outcome{Status: "failed", ErrorCode: "X"}); err != nil || done {
		t.Errorf("second finish: done %v, %v; want not done", done, err)
	}
}
