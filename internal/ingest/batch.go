package ingest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/event"
)

// Errors of the batch operations.
var (
	// ErrBatchNotFound answers unknown batches and other businesses' batches alike.
	ErrBatchNotFound = errors.New("batch not found")
	// ErrBatchFinished answers a cancel of a batch that has already finished.
	ErrBatchFinished = errors.New("batch has already finished")
	// ErrBadCursor answers a page cursor this package did not write.
	ErrBadCursor = errors.New("cursor is not valid")
)

// Batch is a stored batch with its counters.
type Batch struct {
	ID          uuid.UUID
	BusinessID  uuid.UUID
	Provider    string
	Status      string // one of BatchStatuses
	Total       int
	Succeeded   int
	Failed      int
	Cancelled   int
	CreatedAt   time.Time
	UpdatedAt   time.Time
	StartedAt   *time.Time
	CompletedAt *time.Time
	// FileDeletedAt is when the raw upload was deleted (UPLOAD_RETENTION
	// after the batch was final); nil while it is kept.
	FileDeletedAt *time.Time
}

// Remaining is how many of the batch's records are not final yet.
func (b Batch) Remaining() int { return b.Total - b.Succeeded - b.Failed - b.Cancelled }

// Active reports whether the batch still has work: pending or in progress.
func (b Batch) Active() bool { return b.Status == BatchPending || b.Status == BatchInProgress }

// batchColumns are read from the view batch_progress, which sums the counters.
const batchColumns = `id, business_id, provider, status, total_records, succeeded_records, failed_records,
	cancelled_records, created_at, progressed_at, started_at, completed_at, file_deleted_at`

func scanBatch(row pgx.Row) (Batch, error) {
	var b Batch
	err := row.Scan(&b.ID, &b.BusinessID, &b.Provider, &b.Status, &b.Total, &b.Succeeded, &b.Failed,
		&b.Cancelled, &b.CreatedAt, &b.UpdatedAt, &b.StartedAt, &b.CompletedAt, &b.FileDeletedAt)
	return b, err
}

// Get returns the business's batch id, or ErrBatchNotFound: the other
// owners (a report of a batch) check a caller's batch with it.
func Get(ctx context.Context, db database.DB, business, id uuid.UUID) (Batch, error) {
	b, err := scanBatch(db.QueryRow(ctx, `SELECT `+batchColumns+` FROM batch_progress WHERE id = $1 AND business_id = $2`, id, business))
	if errors.Is(err, pgx.ErrNoRows) {
		return Batch{}, ErrBatchNotFound
	}
	if err != nil {
		return Batch{}, fmt.Errorf("get batch %s: %w", id, err)
	}
	return b, nil
}

// ByID returns batch id whoever owns it (for the worker, which acts for no caller), or ErrBatchNotFound.
func ByID(ctx context.Context, db database.DB, id uuid.UUID) (Batch, error) {
	b, err := scanBatch(db.QueryRow(ctx, `SELECT `+batchColumns+` FROM batch_progress WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Batch{}, ErrBatchNotFound
	}
	if err != nil {
		return Batch{}, fmt.Errorf("get batch %s: %w", id, err)
	}
	return b, nil
}

// Result is a record as stored: its outcome so far, never its share token.
type Result struct {
	Row          int
	ExternalID   uuid.UUID
	Status       string // one of RecordStatuses
	ApplicantID  *string
	ReviewStatus *string
	ErrorCode    *string
	ErrorMessage *string
	Attempts     int
	ProcessedAt  *time.Time
}

const resultColumns = `row_number, external_id, status, applicant_id, review_status, error_code, error_message, attempts, processed_at`

func scanResult(r pgx.Row) (Result, error) {
	var rec Result
	err := r.Scan(&rec.Row, &rec.ExternalID, &rec.Status, &rec.ApplicantID, &rec.ReviewStatus,
		&rec.ErrorCode, &rec.ErrorMessage, &rec.Attempts, &rec.ProcessedAt)
	return rec, err
}

// EachRecord calls fn for every record of the batch in row order, streaming
// them from one query so that memory does not grow with the batch: the
// report builder writes its CSV from it.
func EachRecord(ctx context.Context, db database.DB, batchID uuid.UUID, fn func(Result) error) error {
	rows, err := db.Query(ctx, `SELECT `+resultColumns+` FROM batch_records WHERE batch_id = $1 ORDER BY row_number`, batchID)
	if err != nil {
		return fmt.Errorf("read records of %s: %w", batchID, err)
	}
	defer rows.Close()
	for rows.Next() {
		rec, err := scanResult(rows)
		if err != nil {
			return fmt.Errorf("read records of %s: %w", batchID, err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read records of %s: %w", batchID, err)
	}
	return nil
}

// MarkReviewed shows a completed Sumsub review on the succeeded records that
// imported the applicant (their results and reports), in db: the
// transaction that records the review.
func MarkReviewed(ctx context.Context, db database.DB, applicantID, answer string) error {
	_, err := db.Exec(ctx, `
		UPDATE batch_records SET review_status = 'completed', review_answer = $2
		WHERE applicant_id = $1 AND status = 'succeeded' AND review_answer IS DISTINCT FROM $2`,
		applicantID, answer)
	if err != nil {
		return fmt.Errorf("mark records of applicant %s reviewed: %w", applicantID, err)
	}
	return nil
}

// CountByStatus counts the batches by status, for the metrics.
func CountByStatus(ctx context.Context, db database.DB) (map[string]int, error) {
	counts := make(map[string]int, len(BatchStatuses))
	for _, s := range BatchStatuses {
		counts[s] = 0
	}
	rows, err := db.Query(ctx, `SELECT status, count(*) FROM batches GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("count batches: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return nil, fmt.Errorf("count batches: %w", err)
		}
		counts[status] = n
	}
	return counts, rows.Err()
}

// maxErrorGroups is how many error groups a batch's summary lists.
const maxErrorGroups = 20

// ErrorGroup counts the records that failed with one error.
type ErrorGroup struct {
	Code    string
	Message string
	Count   int
}

// Status is a batch as its status endpoint and its events show it: the
// counters, the largest groups of failures and, while it runs, when it
// should finish.
type Status struct {
	Batch
	Errors []ErrorGroup
	// EstimatedCompletion is nil once the batch is finished.
	EstimatedCompletion *time.Time
	// FileRetainedUntil is when the raw upload is (or was) deleted; nil
	// while the batch runs.
	FileRetainedUntil *time.Time
}

// Status returns the calling business's batch id.
func (s *Service) Status(ctx context.Context, id uuid.UUID) (Status, error) {
	b, err := Get(ctx, s.pool, auth.BusinessFrom(ctx), id)
	if err != nil {
		return Status{}, err
	}
	return s.status(ctx, b)
}

// StatusByID returns batch id whoever owns it: the data of the batch's events.
func (s *Service) StatusByID(ctx context.Context, id uuid.UUID) (Status, error) {
	b, err := ByID(ctx, s.pool, id)
	if err != nil {
		return Status{}, err
	}
	return s.status(ctx, b)
}

// status completes b with its error groups and, while it runs, its estimate.
func (s *Service) status(ctx context.Context, b Batch) (Status, error) {
	st := Status{Batch: b, FileRetainedUntil: b.FileDeletedAt}
	if b.FileDeletedAt == nil && b.CompletedAt != nil {
		until := b.CompletedAt.Add(s.retention)
		st.FileRetainedUntil = &until
	}
	rows, err := s.pool.Query(ctx, `
		SELECT coalesce(error_code, ''), coalesce(error_message, ''), count(*) FROM batch_records
		WHERE batch_id = $1 AND status = 'failed'
		GROUP BY error_code, error_message
		ORDER BY count(*) DESC, error_code LIMIT $2`, b.ID, maxErrorGroups)
	if err == nil {
		st.Errors, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ErrorGroup])
	}
	if err != nil {
		return Status{}, fmt.Errorf("group errors of %s: %w", b.ID, err)
	}
	if b.Active() && s.rate > 0 {
		work, err := pendingWork(ctx, s.pool)
		if err != nil {
			return Status{}, err
		}
		eta := time.Now().Add(estimate(work, b.ID, s.rate))
		st.EstimatedCompletion = &eta
	}
	return st, nil
}

// load is a batch's work left, as the estimate runs the schedule forward.
type load struct {
	batch     uuid.UUID
	business  uuid.UUID
	weight    int
	remaining int
}

// pendingWork returns the work left of every unfinished batch of every
// business, with their businesses' weights: they all share the Sumsub rate.
func pendingWork(ctx context.Context, db database.DB) ([]load, error) {
	rows, err := db.Query(ctx, `
		SELECT id, business_id, 1, total_records - succeeded_records - failed_records - cancelled_records FROM batch_progress
		WHERE status IN ('pending', 'in_progress')`)
	if err != nil {
		return nil, fmt.Errorf("count pending work: %w", err)
	}
	work, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (load, error) {
		var l load
		return l, r.Scan(&l.batch, &l.business, &l.weight, &l.remaining)
	})
	if err != nil {
		return nil, fmt.Errorf("count pending work: %w", err)
	}
	businesses := make([]uuid.UUID, len(work))
	for i, l := range work {
		businesses[i] = l.business
	}
	weights, err := auth.Weights(ctx, db, businesses)
	if err != nil {
		return nil, err
	}
	for i := range work {
		work[i].weight = max(weights[work[i].business], 1)
	}
	return work, nil
}

// efficiency is the share of the rate limit the limiter delivers
// (ratelimit's margin and tolerance): what the estimate plans with.
const efficiency = 0.991

// estimate is how long batch id needs to finish when the schedule's policy
// runs forward over the work left: businesses with work share the rate by
// weight, and within one the batches with the fewest records left go
// first. Business B reaches the end of batch id once it has sent the
// records of its own batches ahead of it and its own: W_B records, W_B/w_B
// per unit of weight. By then every business i has sent min(W_i, w_i·W_B/w_B)
// of its W_i records (those with less work finish first and leave their
// share to the others), and the whole rate has been busy with their sum.
func estimate(work []load, id uuid.UUID, rate int) time.Duration {
	var mine load
	for _, l := range work {
		if l.batch == id {
			mine = l
		}
	}
	if mine.remaining <= 0 {
		return 0
	}
	ahead := 0 // the business's records to send until batch id is done
	total := make(map[uuid.UUID]int)
	weight := make(map[uuid.UUID]int)
	for _, l := range work {
		total[l.business] += l.remaining
		weight[l.business] = l.weight
		if l.business == mine.business && (l.remaining < mine.remaining || l.remaining == mine.remaining && l.batch.String() <= id.String()) {
			ahead += l.remaining
		}
	}
	perWeight := float64(ahead) / float64(mine.weight)
	sent := 0.0
	for business, w := range total {
		sent += min(float64(w), float64(weight[business])*perWeight)
	}
	return time.Duration(sent / (float64(rate) * efficiency) * float64(time.Second))
}

// Records returns up to limit records of the calling business's batch, in
// row order, with the given status (any when empty), after the opaque
// position after (empty for the first page), and the next page's position
// (empty on the last).
func (s *Service) Records(ctx context.Context, id uuid.UUID, status, after string, limit int) (list []Result, next string, err error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("list records: limit %d, want at least 1", limit)
	}
	row := 0
	if after != "" {
		if row, err = decodeCursor(after); err != nil {
			return nil, "", ErrBadCursor
		}
	}
	if _, err := Get(ctx, s.pool, auth.BusinessFrom(ctx), id); err != nil {
		return nil, "", err
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+resultColumns+` FROM batch_records
		WHERE batch_id = $1 AND ($2 = '' OR status = $2) AND row_number > $3
		ORDER BY row_number LIMIT $4`, id, status, row, limit+1)
	if err == nil {
		list, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Result, error) { return scanResult(r) })
	}
	if err != nil {
		return nil, "", fmt.Errorf("list records of %s: %w", id, err)
	}
	if len(list) > limit {
		list = list[:limit]
		next = encodeCursor(list[limit-1].Row)
	}
	return list, next, nil
}

// List returns a page of the calling business's batches, newest first,
// at most limit, with their status as Status gives it: of one status when
// status is set, the one made with idempotencyKey when it is set (a client
// that lost its 201 finds its batch), after the batch the cursor after
// names. next is the cursor of the page after it ("" on the last).
func (s *Service) List(ctx context.Context, status, idempotencyKey, after string, limit int) (list []Status, next string, err error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("list batches: limit %d, want at least 1", limit)
	}
	var before *uuid.UUID
	if after != "" {
		b, err := base64.RawURLEncoding.DecodeString(after)
		id, perr := uuid.Parse(strings.TrimPrefix(string(b), "batch:"))
		if err != nil || perr != nil || !strings.HasPrefix(string(b), "batch:") {
			return nil, "", ErrBadCursor
		}
		before = &id
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+batchColumns+` FROM batch_progress
		WHERE business_id = $1 AND ($2 = '' OR status = $2) AND ($3 = '' OR idempotency_key = $3) AND ($4::uuid IS NULL OR id < $4)
		ORDER BY id DESC LIMIT $5`, auth.BusinessFrom(ctx), status, idempotencyKey, before, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list batches: %w", err)
	}
	batches, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Batch, error) { return scanBatch(r) })
	if err != nil {
		return nil, "", fmt.Errorf("list batches: %w", err)
	}
	if len(batches) > limit {
		batches = batches[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte("batch:" + batches[limit-1].ID.String()))
	}
	list = make([]Status, len(batches))
	for i, b := range batches {
		if list[i], err = s.status(ctx, b); err != nil {
			return nil, "", err
		}
	}
	return list, next, nil
}

// Cursors of the records listing are opaque to clients: the last row sent.
func encodeCursor(row int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("row:" + strconv.Itoa(row)))
}

func decodeCursor(s string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, err
	}
	row, ok := strings.CutPrefix(string(b), "row:")
	if !ok {
		return 0, strconv.ErrSyntax
	}
	return strconv.Atoi(row)
}

// Cancel stops the calling business's pending or in-progress batch: records
// never sent to Sumsub become cancelled; records with a call made finish
// normally. The batch.cancelled event is recorded with the change; a batch
// cancelled before is answered as it is, with no second event.
func (s *Service) Cancel(ctx context.Context, id uuid.UUID) (Status, error) {
	business := auth.BusinessFrom(ctx)
	var cancelled int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var status string
		err := tx.QueryRow(ctx, `SELECT status FROM batches WHERE id = $1 AND business_id = $2 FOR UPDATE`, id, business).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrBatchNotFound
		}
		if err != nil {
			return fmt.Errorf("lock batch %s: %w", id, err)
		}
		switch status {
		case BatchCompleted, BatchFailed:
			return ErrBatchFinished
		case BatchCancelled:
			cancelled = -1
			return nil
		}
		// A record with a call in flight, or whose call's answer was lost,
		// finishes as that call does.
		tag, err := tx.Exec(ctx, `
			UPDATE batch_records SET status = 'cancelled', share_token = NULL, processed_at = now()
			WHERE batch_id = $1 AND status = 'pending' AND attempts = answered_attempts`, id)
		if err != nil {
			return fmt.Errorf("cancel records of %s: %w", id, err)
		}
		cancelled = tag.RowsAffected()
		_, err = tx.Exec(ctx, `
			WITH counted AS (
				INSERT INTO batch_counters AS c (batch_id, slot, cancelled) VALUES ($1, 0, $2)
				ON CONFLICT (batch_id, slot) DO UPDATE SET cancelled = c.cancelled + excluded.cancelled, updated_at = now()
			)
			UPDATE batches SET status = 'cancelled', completed_at = now(), updated_at = now()
			WHERE id = $1`, id, cancelled)
		if err != nil {
			return fmt.Errorf("cancel batch %s: %w", id, err)
		}
		return event.Record(ctx, tx, business, event.BatchCancelled, id.String())
	})
	if err != nil {
		return Status{}, err
	}
	if cancelled >= 0 {
		s.logger.InfoContext(ctx, "batch cancelled", "batch_id", id, "cancelled_records", cancelled)
		s.outbox.Announce(ctx, event.Key{Type: event.BatchCancelled, Subject: id.String()})
		// Out of the schedule at once; the reconciler would drop it too.
		if err := s.sched.Drop(ctx, business, id, 0); err != nil {
			s.logger.WarnContext(ctx, "drop the cancelled batch from the schedule", "batch_id", id, "error", err)
		}
	}
	return s.Status(ctx, id)
}
