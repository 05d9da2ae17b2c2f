package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/kycbatch/kycbatch/internal/database"
)

// The record state machine, as the workers drive it (internal/imports): a
// pending record is fed (a task of it put in the sumsub queue: Feed), its
// task claims it for each Sumsub call (the attempt marked before the call:
// Claim), a call to retry goes back to wait in its task (RetryLater), and
// the record is finished once with its outcome (StoreOutcomes, outcome.go);
// the last record completes its batch. The functions below are its SQL:
// this package owns the tables.

// Batch statuses.
const (
	BatchPending    = "pending"
	BatchInProgress = "in_progress"
	BatchCompleted  = "completed"
	BatchFailed     = "failed"
	BatchCancelled  = "cancelled"
)

// Record statuses.
const (
	RecordPending   = "pending"
	RecordSucceeded = "succeeded"
	RecordFailed    = "failed"
	RecordCancelled = "cancelled"
)

// BatchStatuses and RecordStatuses list every status, in their order of
// life.
var (
	BatchStatuses  = []string{BatchPending, BatchInProgress, BatchCompleted, BatchFailed, BatchCancelled}
	RecordStatuses = []string{RecordPending, RecordSucceeded, RecordFailed, RecordCancelled}
)

// Ref names a task of a record: the record, and the feed that made the task.
// Only the task of the record's last feed may call Sumsub for it.
type Ref struct {
	Batch uuid.UUID
	Row   int
	Feed  int
}

// Fed is a batch's records just put in the queue, and what their tasks carry.
type Fed struct {
	Business uuid.UUID
	Batch    uuid.UUID
	Records  []Ref
	// Traceparent is the batch's dispatch span (the parent of its records'
	// tasks' spans); "" when the upload was not traced.
	Traceparent string
}

// Feed marks the batch's first records after row `after` that wait for a
// task (pending, none in the queue), at most n of them, as fed, in one
// statement: their feed count moves on, and the caller enqueues one task of
// each (and calls Unfeed for those it could not). It returns them in row
// order: none when the batch has no such record (the schedule's count was
// ahead) or is no longer pending or in progress. Two feeds at once take
// different records.
//
// after spares the feed the index entries of the records already final
// before it (they stay in the index of pending records until a vacuum).
func Feed(ctx context.Context, db database.DB, batchID uuid.UUID, after, n int) (Fed, error) {
	rows, err := db.Query(ctx, `
		WITH next AS (
			SELECT r.row_number FROM batch_records r
			WHERE r.batch_id = $1 AND r.status = 'pending' AND r.queued_at IS NULL AND r.row_number > $2
			ORDER BY r.row_number LIMIT $3 FOR UPDATE SKIP LOCKED
		)
		UPDATE batch_records r SET queued_at = now(), feeds = r.feeds + 1
		FROM next, batches b
		WHERE r.batch_id = $1 AND r.row_number = next.row_number
		  AND b.id = r.batch_id AND b.status IN ('pending', 'in_progress')
		RETURNING r.row_number, r.feeds, b.business_id, coalesce(b.traceparent, '')`, batchID, after, n)
	if err != nil {
		return Fed{}, fmt.Errorf("feed records of %s: %w", batchID, err)
	}
	f := Fed{Batch: batchID}
	var row, feed int
	_, err = pgx.ForEachRow(rows, []any{&row, &feed, &f.Business, &f.Traceparent}, func() error {
		f.Records = append(f.Records, Ref{Batch: batchID, Row: row, Feed: feed})
		return nil
	})
	if err != nil {
		return Fed{}, fmt.Errorf("feed records of %s: %w", batchID, err)
	}
	slices.SortFunc(f.Records, func(a, b Ref) int { return cmp.Compare(a.Row, b.Row) })
	return f, nil
}

// Unfeed takes back records fed whose tasks were not enqueued: they wait
// for a feed again.
func Unfeed(ctx context.Context, db database.DB, refs []Ref) error {
	for _, r := range refs {
		_, err := db.Exec(ctx, `
			UPDATE batch_records SET queued_at = NULL
			WHERE batch_id = $1 AND row_number = $2 AND feeds = $3 AND status = 'pending'`, r.Batch, r.Row, r.Feed)
		if err != nil {
			return fmt.Errorf("unfeed %s: %w", r, err)
		}
	}
	return nil
}

// String names a record's task in logs and errors: batchId:row (feed n).
func (r Ref) String() string {
	return fmt.Sprintf("%s:%d (feed %d)", r.Batch, r.Row, r.Feed)
}

// Claimed is a record whose attempt is marked, as the Sumsub call and the
// outcome's entity update need it.
type Claimed struct {
	Ref
	Attempt        int // this attempt's number, from 1
	Answered       int // attempts before it whose answer is known
	Refusals       int // Sumsub's 429s before it
	ShareToken     string
	ApplicantLevel string
	BusinessID     uuid.UUID
	ExternalID     uuid.UUID
	CardToken      string
}

// NotClaimed says why a task could not claim its record.
type NotClaimed struct {
	// Status is the record's, when final (or "" when the record is gone).
	Status string
	// Superseded: a later feed's task has the record.
	Superseded bool
	// Until is, while a call of the record may still be in flight (its
	// worker died, or it is slow), when its lease ends: when to try again.
	Until time.Time
	// BatchStatus is the batch's when it is final while the record is not
	// (cancelled with a call in flight, its answer lost).
	BatchStatus string
	// Unanswered: the record's last attempt got no answer.
	Unanswered bool
}

func (e *NotClaimed) Error() string {
	switch {
	case e.Superseded:
		return "superseded by a later feed of the record"
	case !e.Until.IsZero():
		return "a call of the record may be in flight until " + e.Until.UTC().Format(time.RFC3339)
	case e.BatchStatus != "":
		return "the batch is " + e.BatchStatus
	case e.Status == "":
		return "no such record"
	}
	return "the record is " + e.Status
}

// Claimed is a claim's result for one task: the claimed record, or why
// the task could not claim it.
type Claim struct {
	Claimed
	Not *NotClaimed
}

// ClaimAll marks, for each task of refs, that a Sumsub call of its record
// starts, before the call, when the task is of the record's last feed and
// no other call of it may be in flight (every attempt answered, or the last
// one older than lease: its worker died); a batch goes in progress with its
// first record. The tasks that could not claim their record learn why
// (Claim.Not). One statement for all: the tasks that run at once share it.
// The records are locked in one order, so that claims made at once wait for
// each other rather than deadlock.
func ClaimAll(ctx context.Context, db database.DB, refs []Ref, lease time.Duration) ([]Claim, error) {
	batches, rows, feeds := columns(refs)
	res, err := db.Query(ctx, `
		WITH locked AS (
			SELECT r.batch_id, r.row_number FROM batch_records r
			JOIN unnest($1::uuid[], $2::int[], $3::int[]) AS t(batch_id, row_number, feeds)
			  ON r.batch_id = t.batch_id AND r.row_number = t.row_number AND r.feeds = t.feeds
			JOIN batches b ON b.id = r.batch_id AND b.status IN ('pending', 'in_progress')
			WHERE r.status = 'pending' AND (r.attempts = r.answered_attempts OR r.last_attempt_at <= now() - $4::interval)
			ORDER BY r.batch_id, r.row_number FOR UPDATE OF r
		), claimed AS (
			UPDATE batch_records r SET attempts = r.attempts + 1, last_attempt_at = now()
			FROM locked l, batches b
			WHERE r.batch_id = l.batch_id AND r.row_number = l.row_number AND b.id = r.batch_id
			RETURNING r.batch_id, r.row_number, r.attempts, r.answered_attempts, r.refusals, r.share_token,
				r.applicant_level, b.business_id, r.external_id, r.card_processor_public_token
		), started AS (
			UPDATE batches SET status = 'in_progress', started_at = now(), updated_at = now()
			WHERE id IN (SELECT batch_id FROM claimed) AND status = 'pending'
		)
		SELECT * FROM claimed`, batches, rows, feeds, lease)
	if err != nil {
		return nil, fmt.Errorf("claim %d records: %w", len(refs), err)
	}
	type key struct {
		batch uuid.UUID
		row   int
	}
	got := make(map[key]Claimed, len(refs))
	var c Claimed
	var token, level, card *string
	_, err = pgx.ForEachRow(res, []any{&c.Batch, &c.Row, &c.Attempt, &c.Answered, &c.Refusals, &token, &level, &c.BusinessID, &c.ExternalID, &card}, func() error {
		c.ShareToken, c.ApplicantLevel, c.CardToken = deref(token), deref(level), deref(card)
		got[key{c.Batch, c.Row}] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim %d records: %w", len(refs), err)
	}
	out := make([]Claim, len(refs))
	for i, ref := range refs {
		if c, ok := got[key{ref.Batch, ref.Row}]; ok {
			// One claim of a record, even for a task run twice at once:
			// the other learns that a call is in flight.
			delete(got, key{ref.Batch, ref.Row})
			c.Feed = ref.Feed
			out[i] = Claim{Claimed: c}
			continue
		}
		not, err := whyNotClaimed(ctx, db, ref, lease)
		if err != nil {
			return nil, err
		}
		out[i] = Claim{Claimed: Claimed{Ref: ref}, Not: not}
	}
	return out, nil
}

// whyNotClaimed reads why ref's claim took nothing.
func whyNotClaimed(ctx context.Context, db database.DB, ref Ref, lease time.Duration) (*NotClaimed, error) {
	var status, batchStatus string
	var feeds int
	var unanswered bool
	var until *time.Time
	err := db.QueryRow(ctx, `
		SELECT r.status, r.feeds, b.status, r.attempts > r.answered_attempts,
			CASE WHEN r.attempts > r.answered_attempts AND r.last_attempt_at > now() - $3::interval
				THEN r.last_attempt_at + $3::interval END
		FROM batch_records r JOIN batches b ON b.id = r.batch_id
		WHERE r.batch_id = $1 AND r.row_number = $2`, ref.Batch, ref.Row, lease).
		Scan(&status, &feeds, &batchStatus, &unanswered, &until)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return &NotClaimed{}, nil
	case err != nil:
		return nil, fmt.Errorf("claim %s: %w", ref, err)
	case status != RecordPending:
		return &NotClaimed{Status: status}, nil
	case feeds != ref.Feed:
		return &NotClaimed{Status: status, Superseded: true}, nil
	case until != nil:
		return &NotClaimed{Status: status, Until: *until}, nil
	case batchStatus != BatchPending && batchStatus != BatchInProgress:
		return &NotClaimed{Status: status, BatchStatus: batchStatus, Unanswered: unanswered}, nil
	}
	// The record changed between the claim and this look (its lease ended,
	// another run of its task answered): try again at once.
	return &NotClaimed{Status: status, Until: time.Now()}, nil
}

// Unclaim takes back an attempt marked for a call that was not made.
func Unclaim(ctx context.Context, db database.DB, c Claimed) error {
	_, err := db.Exec(ctx, `
		UPDATE batch_records SET attempts = attempts - 1
		WHERE batch_id = $1 AND row_number = $2 AND feeds = $3 AND status = 'pending' AND attempts > 0`, c.Batch, c.Row, c.Feed)
	if err != nil {
		return fmt.Errorf("unclaim %s: %w", c.Ref, err)
	}
	return nil
}

// Answer is what became of a call that will be made again.
type Answer int

const (
	// Lost: no answer came (a timeout): the call may have reached Sumsub,
	// so the attempt stays unanswered.
	Lost Answer = iota
	// Unused: Sumsub refused the call without running it (503): the share
	// token is unused, so it cannot explain a later invalid-share-token.
	Unused
	// Refused: Sumsub refused the call with 429: not an attempt at all.
	Refused
)

// RetryLater records what became of a claimed record's call that will be
// made again by its task.
func RetryLater(ctx context.Context, db database.DB, c Claimed, a Answer) error {
	_, err := db.Exec(ctx, `
		UPDATE batch_records SET attempts = attempts - $4, refusals = refusals + $4, answered_attempts = answered_attempts + $5
		WHERE batch_id = $1 AND row_number = $2 AND feeds = $3 AND status = 'pending'`,
		c.Batch, c.Row, c.Feed, b2i(a == Refused), b2i(a == Unused))
	if err != nil {
		return fmt.Errorf("retry %s later: %w", c.Ref, err)
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// QueuedBefore lists the records with a task in the queue that was put there,
// or last found there, before t, oldest first, at most limit: the tasks the
// reconciler looks for in Redis. It reads the index of queued records, never
// the backlog.
func QueuedBefore(ctx context.Context, db database.DB, t time.Time, limit int) ([]Queued, error) {
	rows, err := db.Query(ctx, `
		SELECT b.business_id, r.batch_id, r.row_number, r.feeds FROM batch_records r JOIN batches b ON b.id = r.batch_id
		WHERE r.status = 'pending' AND r.queued_at IS NOT NULL AND r.queued_at < $1
		ORDER BY r.queued_at LIMIT $2`, t, limit)
	if err != nil {
		return nil, fmt.Errorf("list queued records: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Queued, error) {
		var q Queued
		return q, row.Scan(&q.Business, &q.Batch, &q.Row, &q.Feed)
	})
	if err != nil {
		return nil, fmt.Errorf("list queued records: %w", err)
	}
	return list, nil
}

// Queued is a record with a task in the queue, and its business.
type Queued struct {
	Ref
	Business uuid.UUID
}

// Touch notes that the tasks of refs were found in the queue now.
func Touch(ctx context.Context, db database.DB, refs []Ref) error {
	if len(refs) == 0 {
		return nil
	}
	batches, rows, feeds := columns(refs)
	_, err := db.Exec(ctx, `
		UPDATE batch_records r SET queued_at = now()
		FROM unnest($1::uuid[], $2::int[], $3::int[]) AS t(batch_id, row_number, feeds)
		WHERE r.batch_id = t.batch_id AND r.row_number = t.row_number AND r.feeds = t.feeds AND r.status = 'pending'`,
		batches, rows, feeds)
	if err != nil {
		return fmt.Errorf("touch queued records: %w", err)
	}
	return nil
}

// Unqueue takes the records whose tasks were lost out of the queue: they
// wait for a feed again. It returns how many it took of each batch (a record
// final or fed again meanwhile is left alone).
func Unqueue(ctx context.Context, db database.DB, refs []Ref) (map[uuid.UUID]int, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	batches, rows, feeds := columns(refs)
	res, err := db.Query(ctx, `
		UPDATE batch_records r SET queued_at = NULL
		FROM unnest($1::uuid[], $2::int[], $3::int[]) AS t(batch_id, row_number, feeds)
		WHERE r.batch_id = t.batch_id AND r.row_number = t.row_number AND r.feeds = t.feeds AND r.status = 'pending'
		RETURNING r.batch_id`, batches, rows, feeds)
	if err != nil {
		return nil, fmt.Errorf("unqueue lost records: %w", err)
	}
	n := make(map[uuid.UUID]int)
	var id uuid.UUID
	_, err = pgx.ForEachRow(res, []any{&id}, func() error { n[id]++; return nil })
	if err != nil {
		return nil, fmt.Errorf("unqueue lost records: %w", err)
	}
	return n, nil
}

func columns(refs []Ref) (batches []uuid.UUID, rows, feeds []int) {
	for _, r := range refs {
		batches, rows, feeds = append(batches, r.Batch), append(rows, r.Row), append(feeds, r.Feed)
	}
	return batches, rows, feeds
}

// UnqueueAll takes every record of the active batches out of the queue
// (Redis lost every task: a flush, a new Redis): they wait for a feed again.
// It reads and writes only the records that were queued.
func UnqueueAll(ctx context.Context, db database.DB) error {
	_, err := db.Exec(ctx, `UPDATE batch_records SET queued_at = NULL WHERE status = 'pending' AND queued_at IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("unqueue every record: %w", err)
	}
	return nil
}

// Unqueued counts the batch's pending records with no task in the queue:
// those the schedule should hold.
func Unqueued(ctx context.Context, db database.DB, batchID uuid.UUID) (int, error) {
	var n int
	err := db.QueryRow(ctx, `
		SELECT count(*) FROM batch_records WHERE batch_id = $1 AND status = 'pending' AND queued_at IS NULL`, batchID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the records of %s to feed: %w", batchID, err)
	}
	return n, nil
}

// Active is a batch not finished yet, as the workers see it.
type Active struct {
	ID       uuid.UUID
	Business uuid.UUID
	// Remaining is how many of its records are not final, by its counters.
	Remaining int
}

// ActiveBatches lists the batches pending or in progress, with how many of
// their records are not final (from the counters: no record is read).
func ActiveBatches(ctx context.Context, db database.DB) ([]Active, error) {
	rows, err := db.Query(ctx, `
		SELECT id, business_id, total_records - succeeded_records - failed_records - cancelled_records
		FROM batch_progress WHERE status IN ('pending', 'in_progress')`)
	if err != nil {
		return nil, fmt.Errorf("list active batches: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Active])
	if err != nil {
		return nil, fmt.Errorf("list active batches: %w", err)
	}
	return list, nil
}

// nullable stores an empty optional field as NULL.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
