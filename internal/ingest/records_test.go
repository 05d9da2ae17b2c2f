package ingest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
)

// storeBatch stores a batch of business with records at rows 2 … n+1 (share
// token "tok<row>"), in status.
func storeBatch(tb testing.TB, pool *pgxpool.Pool, business uuid.UUID, status string, n int) uuid.UUID {
	tb.Helper()
	batch := uuid.New()
	_, err := pool.Exec(context.Background(), `
		WITH b AS (INSERT INTO businesses (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING),
		batch AS (
			INSERT INTO batches (id, business_id, idempotency_key, provider, status, total_records, file_key, file_size, file_sha256)
			VALUES ($3, $1, $2, 'sumsub', $4, $5, 'x', 0, ''))
		INSERT INTO batch_records (batch_id, row_number, external_id, share_token)
		SELECT $3, r, gen_random_uuid(), 'tok' || r FROM generate_series(2, $5 + 1) r`,
		business, batch.String(), batch, status, n)
	if err != nil {
		tb.Fatal(err)
	}
	return batch
}

// TestFeed: a feed takes the first records after the cursor with no task in
// the queue, in row order, and no more than asked; two feeds never take one
// record; a record unfed or unqueued is fed again, by a new feed; the
// records of a batch no longer active are not fed.
func TestFeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	business := uuid.New()
	batch := storeBatch(t, pool, business, BatchPending, 6) // rows 2-7
	feed := func(after, n int) []Ref {
		t.Helper()
		f, err := Feed(ctx, pool, batch, after, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Records) > 0 && (f.Business != business || f.Batch != batch) {
			t.Errorf("fed %+v, want business %s and batch %s", f, business, batch)
		}
		return f.Records
	}
	ref := func(row, feed int) Ref { return Ref{Batch: batch, Row: row, Feed: feed} }

	if diff := cmp.Diff([]Ref{ref(4, 1), ref(5, 1)}, feed(3, 2)); diff != "" {
		t.Errorf("two after row 3 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Ref{ref(2, 1), ref(3, 1), ref(6, 1), ref(7, 1)}, feed(0, 10)); diff != "" {
		t.Errorf("the rest from the start (-want +got):\n%s", diff)
	}
	if got := feed(0, 10); len(got) != 0 {
		t.Errorf("every record is in the queue, yet fed %v", got)
	}
	if n, err := Unqueued(ctx, pool, batch); err != nil || n != 0 {
		t.Errorf("Unqueued = %d, %v; want 0", n, err)
	}
	// Row 2's enqueue failed; row 3's task was lost, row 4's was not (its
	// feed is another).
	if err := Unfeed(ctx, pool, []Ref{ref(2, 1)}); err != nil {
		t.Fatal(err)
	}
	if n, err := Unqueue(ctx, pool, []Ref{ref(3, 1), ref(4, 2)}); err != nil || !cmp.Equal(n, map[uuid.UUID]int{batch: 1}) {
		t.Errorf("Unqueue = %v, %v; want one record of the batch", n, err)
	}
	if n, err := Unqueued(ctx, pool, batch); err != nil || n != 2 {
		t.Errorf("Unqueued = %d, %v; want 2", n, err)
	}
	if diff := cmp.Diff([]Ref{ref(2, 2), ref(3, 2)}, feed(0, 10)); diff != "" {
		t.Errorf("fed again (-want +got):\n%s", diff)
	}

	// Two feeds at once never take one record.
	other := storeBatch(t, pool, business, BatchInProgress, 200)
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				f, err := Feed(ctx, pool, other, 0, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(f.Records) == 0 {
					return
				}
				mu.Lock()
				for _, r := range f.Records {
					seen[r.Row]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 200 {
		t.Errorf("%d records fed, want 200", len(seen))
	}
	for row, n := range seen {
		if n != 1 {
			t.Errorf("row %d fed %d times", row, n)
		}
	}

	cancelled := storeBatch(t, pool, business, BatchCancelled, 2)
	if got, err := Feed(ctx, pool, cancelled, 0, 10); err != nil || len(got.Records) != 0 {
		t.Errorf("a cancelled batch's records: fed %v, %v", got.Records, err)
	}
}

// TestClaim: a task claims its record only with the record's last feed and
// no call of it in flight, starting the batch; otherwise it learns why. A
// 429 is not an attempt; an attempt not made is taken back.
func TestClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	business := uuid.New()
	batch := storeBatch(t, pool, business, BatchPending, 2)
	f, err := Feed(ctx, pool, batch, 0, 2)
	if err != nil || len(f.Records) != 2 {
		t.Fatal(f, err)
	}
	row2, row3 := f.Records[0], f.Records[1]
	type got struct {
		Attempt, Answered, Refusals int
		Token                       string
	}
	claim := func(ref Ref, lease time.Duration) (*got, error) {
		t.Helper()
		list, err := ClaimAll(ctx, pool, []Ref{ref}, lease)
		if err != nil {
			t.Fatal(err)
		}
		if list[0].Not != nil {
			return nil, list[0].Not
		}
		c := list[0].Claimed
		if c.BusinessID != business || c.Ref != ref {
			t.Errorf("claimed %+v, want business %s and %s", c, business, ref)
		}
		return &got{c.Attempt, c.Answered, c.Refusals, c.ShareToken}, nil
	}
	check := func(what string, g *got, err error, want *got, wantErr *NotClaimed) {
		t.Helper()
		var nc *NotClaimed
		if err != nil && !errors.As(err, &nc) {
			t.Fatalf("%s: %v", what, err)
		}
		if nc != nil && !nc.Until.IsZero() {
			nc.Until = time.Time{} // when the lease ends is now plus the lease: not compared
			nc.Status = "in flight"
		}
		if diff := cmp.Diff(want, g); diff != "" {
			t.Errorf("%s (-want +got):\n%s", what, diff)
		}
		if diff := cmp.Diff(wantErr, nc); diff != "" {
			t.Errorf("%s: why not (-want +got):\n%s", what, diff)
		}
	}

	g, err := claim(row2, time.Minute)
	check("first claim", g, err, &got{1, 0, 0, "tok2"}, nil)
	var status string
	if err := pool.QueryRow(ctx, `SELECT status FROM batches WHERE id = $1`, batch).Scan(&status); err != nil || status != BatchInProgress {
		t.Fatalf("batch is %q (%v) after its first claim, want in_progress", status, err)
	}
	g, err = claim(row2, time.Minute)
	check("the same record with its call in flight", g, err, nil, &NotClaimed{Status: "in flight"})
	g, err = claim(Ref{Batch: batch, Row: 3, Feed: 7}, time.Minute)
	check("another feed's task", g, err, nil, &NotClaimed{Status: RecordPending, Superseded: true})

	// Row 2: Sumsub answered 429 (not an attempt), then 503 (the token unused).
	c := Claimed{Ref: row2}
	if err := RetryLater(ctx, pool, c, Refused); err != nil {
		t.Fatal(err)
	}
	g, err = claim(row2, time.Minute)
	check("after a 429: the same attempt again", g, err, &got{1, 0, 1, "tok2"}, nil)
	if err := RetryLater(ctx, pool, c, Unused); err != nil {
		t.Fatal(err)
	}
	g, err = claim(row2, time.Minute)
	check("after a 503", g, err, &got{2, 1, 1, "tok2"}, nil)
	// Unanswered, but older than the lease: that call is over (its worker died).
	g, err = claim(row2, 0)
	check("after the lease", g, err, &got{3, 1, 1, "tok2"}, nil)
	if err := Unclaim(ctx, pool, Claimed{Ref: row2}); err != nil {
		t.Fatal(err)
	}
	g, err = claim(row2, 0)
	check("an attempt taken back", g, err, &got{3, 1, 1, "tok2"}, nil)

	// Row 3 ends; row 2's batch is cancelled with its call lost.
	if _, err := StoreOutcomes(ctx, pool, []Final{{Batch: batch, Row: 3, Outcome: Outcome{Status: RecordFailed, ErrorCode: "X"}}}); err != nil {
		t.Fatal(err)
	}
	g, err = claim(row3, time.Minute)
	check("a final record", g, err, nil, &NotClaimed{Status: RecordFailed})
	if _, err := pool.Exec(ctx, `UPDATE batches SET status = 'cancelled' WHERE id = $1`, batch); err != nil {
		t.Fatal(err)
	}
	g, err = claim(row2, 0)
	check("a cancelled batch", g, err, nil, &NotClaimed{Status: RecordPending, BatchStatus: BatchCancelled, Unanswered: true})
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
	o := Outcome{Status: RecordSucceeded, ApplicantID: "app-early", ReviewStatus: "pending"}
	c := &Claimed{Ref: Ref{Batch: batch, Row: 2}, BusinessID: business, ExternalID: external}
	if res, err := StoreOutcomes(ctx, pool, []Final{{Batch: batch, Row: 2, Claimed: c, Outcome: o, KYCStatus: "PENDING"}}); err != nil || res[0] != (Stored{Stored: true, BatchDone: true}) {
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
	if res, err := StoreOutcomes(ctx, pool, []Final{{Batch: batch, Row: 2, Claimed: c, Outcome: Outcome{Status: RecordFailed, ErrorCode: "X"}}}); err != nil || res[0] != (Stored{}) {
		t.Errorf("second store: %+v, %v; want nothing stored", res, err)
	}
}

// TestClaimAll: the tasks that run at once claim together: every record
// once, even when groups overlap or a task runs twice in one group, with no
// deadlock between groups locking records at once.
func TestClaimAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	business := uuid.New()
	var refs []Ref
	for range 3 {
		batch := storeBatch(t, pool, business, BatchPending, 40)
		f, err := Feed(ctx, pool, batch, 0, 40)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, f.Records...)
	}
	var mu sync.Mutex
	claimed := map[Ref]int{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			// Each group: a slice of the refs in its own order, one twice.
			list := append([]Ref(nil), refs[g*10:g*10+30]...)
			list = append(list, list[0])
			for i := range list {
				j := (i*7 + g) % len(list)
				list[i], list[j] = list[j], list[i]
			}
			got, err := ClaimAll(ctx, pool, list, time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for i, c := range got {
				if c.Not == nil {
					if c.Ref != list[i] || c.Attempt != 1 || c.ShareToken == "" {
						t.Errorf("claimed %+v for %s", c.Claimed, list[i])
					}
					claimed[c.Ref]++
				} else if c.Not.Until.IsZero() {
					t.Errorf("%s not claimed: %v; want a call in flight", list[i], c.Not)
				}
			}
		})
	}
	wg.Wait()
	for _, ref := range refs[:100] {
		if claimed[ref] != 1 {
			t.Errorf("%s claimed %d times, want once", ref, claimed[ref])
		}
	}
}
