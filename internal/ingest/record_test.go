package ingest

import (
	"context"
	"fmt"
	"sync"
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
		list, err := s.claim(ctx, batch, 0, lease, 1)
		if err != nil || len(list) > 1 {
			t.Fatal(list, err)
		}
		if len(list) == 0 {
			return nil
		}
		c := list[0]
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

// TestClaimSeveral: a claim of several takes the first records that may be
// sent, after the cursor, in row order, and no more than asked.
func TestClaimSeveral(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	business, batch := uuid.New(), uuid.New()
	_, err := pool.Exec(ctx, `
		WITH b AS (INSERT INTO businesses (id, name) VALUES ($1, 'several')),
		batch AS (
			INSERT INTO batches (id, business_id, idempotency_key, provider, total_records, file_key, file_size, file_sha256)
			VALUES ($2, $1, 'several', 'sumsub', 6, 'x', 0, ''))
		INSERT INTO batch_records (batch_id, row_number, external_id, share_token, retry_at)
		SELECT $2, n, gen_random_uuid(), 'tok', CASE WHEN n = 4 THEN now() + interval '1 hour' END
		FROM generate_series(2, 7) n`, business, batch)
	if err != nil {
		t.Fatal(err)
	}
	s := records{pool: pool}
	rows := func(after, n int) []int {
		t.Helper()
		list, err := s.claim(ctx, batch, after, time.Minute, n)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, c := range list {
			got = append(got, c.Row)
		}
		return got
	}
	// Row 4 waits out a retry.
	if got := rows(2, 3); !cmp.Equal(got, []int{3, 5, 6}) {
		t.Errorf("three after row 2: %v, want [3 5 6]", got)
	}
	if got := rows(0, 5); !cmp.Equal(got, []int{2, 7}) {
		t.Errorf("five from the start: %v, want the two left, [2 7]", got)
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
		INSERT INTO batch_records (batch_id, row_number, external_id, share_token, attempts, last_attempt_at)
		VALUES ($2, 2, $3, 'tok', 1, now())`,
		business, batch, external)
	if err != nil {
		t.Fatal(err)
	}
	s := records{pool: pool}
	o := outcome{Status: "succeeded", ApplicantID: "app-early", ReviewStatus: "pending", KYCStatus: "PENDING"}
	c := &claimed{BatchID: batch, Row: 2, BusinessID: business, ExternalID: external}
	if res, err := s.store(ctx, []toStore{{BatchID: batch, Row: 2, Claimed: c, Outcome: o}}); err != nil || res[0] != (storeResult{Stored: true, BatchDone: true}) {
		t.Fatalf("store: %+v, %v; want stored, the batch done", res, err)
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
	if res, err := s.store(ctx, []toStore{{BatchID: batch, Row: 2, Claimed: c, Outcome: outcome{Status: "failed", ErrorCode: "X"}}}); err != nil || res[0] != (storeResult{}) {
		t.Errorf("second store: %+v, %v; want nothing stored", res, err)
	}
}

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
	var list []toStore
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
			c := claimed{BatchID: batch, BusinessID: business}
			if err := rows.Scan(&c.Row, &c.ExternalID); err != nil {
				t.Fatal(err)
			}
			o := outcome{Status: "succeeded", ApplicantID: fmt.Sprintf("app-%s-%d", batch, c.Row), ReviewStatus: "init", KYCStatus: "PENDING"}
			if c.Row%3 == 0 {
				o = outcome{Status: "failed", ErrorCode: "SUMSUB_X", ErrorMessage: "refused"}
			}
			list = append(list, toStore{BatchID: batch, Row: c.Row, Claimed: &c, Outcome: o})
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

	workers := []*grouper{{records: records{pool: pool}}, {records: records{pool: pool}}}
	results := make([]storeResult, len(list))
	var wg sync.WaitGroup
	for i := range list {
		wg.Go(func() {
			res, err := workers[i%2].store(ctx, list[i])
			if err != nil {
				t.Errorf("store row %d: %v", list[i].Row, err)
			}
			results[i] = res
		})
	}
	wg.Wait()

	done := map[uuid.UUID]bool{}
	for i, res := range results {
		first := list[i].BatchID == batches[0] && list[i].Row == 2
		if res.Stored == first {
			t.Errorf("batch %s row %d: stored %v", list[i].BatchID, list[i].Row, res.Stored)
		}
		done[list[i].BatchID] = done[list[i].BatchID] || res.BatchDone
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
		if want := perBatch - perBatch/3; linked != want-b2i(batch == batches[0]) {
			t.Errorf("batch %s: %d entities linked to their records' applicants, want %d", batch, linked, want)
		}
	}
}
