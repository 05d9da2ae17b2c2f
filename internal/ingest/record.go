package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/event"
)

// The record state machine: a pending record is claimed for each Sumsub
// call (its attempt marked before the call), and finished once with its
// outcome (succeeded, failed or cancelled), its entity's update and its
// batch's counters; the last record completes its batch. The functions
// below are its SQL; process.go drives it from the tasks.

// records reads and writes the records of batches for the pipeline.
type records struct {
	pool *pgxpool.Pool
}

// pendingRecord is a record with its batch's state, for the import task to
// find out why it could not claim the record.
type pendingRecord struct {
	BusinessID  uuid.UUID
	BatchStatus string
	Status      string
	ExternalID  uuid.UUID
	Attempts    int
	Answered    int
	// LeaseLeft is how long the last attempt, if unanswered, may still be in flight.
	LeaseLeft time.Duration
}

// errNoRecord says a task names a record that does not exist (its batch was deleted).
var errNoRecord = errors.New("record not found")

// record returns a record with its batch's state.
func (s records) record(ctx context.Context, batchID uuid.UUID, row int, lease time.Duration) (pendingRecord, error) {
	var r pendingRecord
	var left *time.Duration
	err := s.pool.QueryRow(ctx, `
		SELECT b.business_id, b.status, r.status, r.external_id, r.attempts, r.answered_attempts,
			r.last_attempt_at + $3::interval - now()
		FROM batch_records r JOIN batches b ON b.id = r.batch_id
		WHERE r.batch_id = $1 AND r.row_number = $2`, batchID, row, lease).
		Scan(&r.BusinessID, &r.BatchStatus, &r.Status, &r.ExternalID, &r.Attempts, &r.Answered, &left)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, errNoRecord
	}
	if err != nil {
		return r, fmt.Errorf("load record %s: %w", recordTaskID(batchID, row), err)
	}
	if left != nil && r.Attempts > r.Answered {
		r.LeaseLeft = max(*left, 0)
	}
	return r, nil
}

// claimed is a record whose attempt is marked, as the Sumsub call and the
// outcome's entity update need it.
type claimed struct {
	Attempt        int // this attempt's number, from 1
	Answered       int // attempts before it whose answer is known
	ShareToken     string
	ApplicantLevel string
	BusinessID     uuid.UUID
	ExternalID     uuid.UUID
	CardToken      string
}

// claim marks, before the call, that a Sumsub call starts for the record, in
// one statement: the record is pending, its batch in progress, and no earlier
// attempt may be in flight (one unanswered and younger than lease: another
// task may be calling Sumsub for the record, as when the reconciler
// re-enqueued a task Redis lost). ok is false, and nothing marked, when any
// of these fails; record tells which.
func (s records) claim(ctx context.Context, batchID uuid.UUID, row int, lease time.Duration) (c claimed, ok bool, err error) {
	var token, level, card *string
	err = s.pool.QueryRow(ctx, `
		UPDATE batch_records r SET attempts = r.attempts + 1, last_attempt_at = now()
		FROM batches b
		WHERE r.batch_id = $1 AND r.row_number = $2 AND r.status = 'pending'
		  AND b.id = r.batch_id AND b.status = 'in_progress'
		  AND (r.attempts = r.answered_attempts OR r.last_attempt_at <= now() - $3::interval)
		RETURNING r.attempts, r.answered_attempts, r.share_token, r.applicant_level, b.business_id, r.external_id,
			r.card_processor_public_token`, batchID, row, lease).
		Scan(&c.Attempt, &c.Answered, &token, &level, &c.BusinessID, &c.ExternalID, &card)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("claim %s: %w", recordTaskID(batchID, row), err)
	}
	c.ShareToken, c.ApplicantLevel, c.CardToken = deref(token), deref(level), deref(card)
	return c, true, nil
}

// unmarkAttempt takes back an attempt marked for a call that was not made.
func (s records) unmarkAttempt(ctx context.Context, batchID uuid.UUID, row int) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE batch_records SET attempts = attempts - 1
		WHERE batch_id = $1 AND row_number = $2 AND status = 'pending' AND attempts > 0`, batchID, row)
	if err != nil {
		return fmt.Errorf("unmark attempt of %s: %w", recordTaskID(batchID, row), err)
	}
	return nil
}

// markAnswered records that the last call's answer left the share token
// unused (Sumsub refused it with 429 or 503), so it cannot explain a later
// invalid-share-token.
func (s records) markAnswered(ctx context.Context, batchID uuid.UUID, row int) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE batch_records SET answered_attempts = answered_attempts + 1
		WHERE batch_id = $1 AND row_number = $2 AND status = 'pending'`, batchID, row)
	if err != nil {
		return fmt.Errorf("mark answer of %s: %w", recordTaskID(batchID, row), err)
	}
	return nil
}

// outcome is how a record ends.
type outcome struct {
	Status       string // succeeded, failed or cancelled
	ApplicantID  string
	ReviewStatus string
	ReviewAnswer string
	KYCStatus    string // the entity's new kycStatus when an applicant was imported
	ErrorCode    string
	ErrorMessage string
}

// Record error codes of ours (Sumsub's own are SUMSUB_<errorName>).
const (
	CodeEntityNotFound     = "ENTITY_NOT_FOUND"
	CodeDuplicateCardToken = "DUPLICATE_CARD_PROCESSOR_TOKEN"
	CodeOutcomeUnknown     = "SUMSUB_OUTCOME_UNKNOWN"
	CodeSumsubUnavailable  = "SUMSUB_UNAVAILABLE"
	CodeSumsubRateLimited  = "SUMSUB_RATE_LIMITED"
)

const (
	msgEntityNotFound     = "entity not found"
	msgDuplicateCardToken = "cardProcessorPublicToken is already held by another entity"
	msgOutcomeUnknown     = "the answer to an earlier attempt was lost and the share token has since been used: check the applicant in Sumsub"
	// maxStoredMessageLength bounds an error message kept on a record.
	maxStoredMessageLength = 1000
)

// storeOutcomeSQL stores a pending record's outcome ($1 batch, $2 row, $3
// status, $4 applicant, $5 review status, $6 review answer, $7 error code,
// $8 error message) and counts it in one of its batch's 16 counter slots; a
// record already final (a task delivered twice) is left alone, and the
// count is 0.
const storeOutcomeSQL = `
	WITH stored AS (
		UPDATE batch_records SET status = $3, applicant_id = $4, review_status = $5, review_answer = $6,
			error_code = $7, error_message = $8, processed_at = now(), share_token = NULL,
			answered_attempts = CASE WHEN $3 = 'cancelled' THEN answered_attempts ELSE attempts END
		WHERE batch_id = $1 AND row_number = $2 AND status = 'pending'
		RETURNING status
	), counted AS (
		INSERT INTO batch_counters AS c (batch_id, slot, succeeded, failed, cancelled)
		SELECT $1, $2 % 16, (status = 'succeeded')::int, (status = 'failed')::int, (status = 'cancelled')::int FROM stored
		ON CONFLICT (batch_id, slot) DO UPDATE SET
			succeeded = c.succeeded + excluded.succeeded, failed = c.failed + excluded.failed,
			cancelled = c.cancelled + excluded.cancelled, updated_at = now()
	)
	SELECT count(*) FROM stored`

// finish stores a record's outcome, the batch's counters and, when an
// applicant was imported, the entity's update, and tops the batch's window
// up, in one transaction. It returns the rows to enqueue. A record that is
// already final (a task delivered twice) is left alone, the entity too: done
// is false then. The caller then calls completeIfDone.
//
// The entity's update decides the outcome: the record fails with
// DUPLICATE_CARD_PROCESSOR_TOKEN when another entity of the business holds
// its card token, and with ENTITY_NOT_FOUND when the entity was deleted
// while the call was in flight; a review webhook that came before the link
// gives the record its review.
func (s records) finish(ctx context.Context, batchID uuid.UUID, row int, c *claimed, o outcome, window int) (next []int, done bool, err error) {
	if o.ApplicantID == "" {
		// Nothing to link: one pipelined round trip, run by PostgreSQL as
		// one implicit transaction.
		b := &pgx.Batch{}
		queueOutcome(b, batchID, row, o, &done)
		queueTopUp(b, batchID, window, &next)
		if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
			return nil, false, fmt.Errorf("store outcome of %s: %w", recordTaskID(batchID, row), err)
		}
		if !done {
			return nil, false, nil
		}
		return next, true, nil
	}
	next, done, err = s.finishImported(ctx, batchID, row, c, o, window)
	if err != nil {
		return nil, false, fmt.Errorf("store outcome of %s: %w", recordTaskID(batchID, row), err)
	}
	return next, done, nil
}

// finishImported is finish for an imported applicant: an explicit
// transaction in two round trips, its BEGIN sent with the record's lock and
// the entity's update, its COMMIT with the outcome and the top-up (or a
// ROLLBACK, when the record was final already).
func (s records) finishImported(ctx context.Context, batchID uuid.UUID, row int, c *claimed, o outcome, window int) (next []int, done bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, err
	}
	// A connection an error left inside the transaction is rolled back; if
	// even that fails, the pool closes it on release rather than reuse it.
	defer conn.Release()
	defer func() {
		if err != nil && conn.Conn().PgConn().TxStatus() != 'I' {
			conn.Exec(context.WithoutCancel(ctx), "ROLLBACK") //nolint:errcheck // see above
		}
	}()

	var pending bool
	var linked entity.Linked
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// The record is locked first: a concurrent finish of it waits, then finds it final.
	b.Queue(`SELECT EXISTS (SELECT 1 FROM batch_records WHERE batch_id = $1 AND row_number = $2 AND status = 'pending' FOR UPDATE)`,
		batchID, row).QueryRow(func(r pgx.Row) error { return r.Scan(&pending) })
	entity.QueueLinkApplicant(b, entity.Link{
		Business: c.BusinessID, ExternalID: c.ExternalID, ApplicantID: o.ApplicantID, KYCStatus: o.KYCStatus, CardToken: c.CardToken,
	}, &linked)
	if err = conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, false, err
	}
	if !pending {
		_, err = conn.Exec(ctx, "ROLLBACK") // the entity's update goes with it
		return nil, false, err
	}
	switch {
	case !linked.Found:
		o.Status, o.ErrorCode, o.ErrorMessage = "failed", CodeEntityNotFound, msgEntityNotFound
	case linked.CardTaken:
		o.Status, o.ErrorCode, o.ErrorMessage = "failed", CodeDuplicateCardToken, msgDuplicateCardToken
	}
	if linked.ReviewAnswer != "" {
		o.ReviewStatus, o.ReviewAnswer = "completed", linked.ReviewAnswer
	}
	b = &pgx.Batch{}
	queueOutcome(b, batchID, row, o, &done)
	queueTopUp(b, batchID, window, &next)
	b.Queue("COMMIT")
	if err = conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, false, err
	}
	return next, done, nil
}

// queueOutcome queues the outcome's statement on b; stored reports whether it stored it.
func queueOutcome(b *pgx.Batch, batchID uuid.UUID, row int, o outcome, stored *bool) {
	b.Queue(storeOutcomeSQL, batchID, row, o.Status, nullable(o.ApplicantID), nullable(o.ReviewStatus), nullable(o.ReviewAnswer),
		nullable(o.ErrorCode), nullable(truncate(o.ErrorMessage, maxStoredMessageLength))).QueryRow(func(row pgx.Row) error {
		var n int
		err := row.Scan(&n)
		*stored = n > 0
		return err
	})
}

// queueTopUp queues the window's top-up on b; next receives the rows that entered it.
func queueTopUp(b *pgx.Batch, batchID uuid.UUID, window int, next *[]int) {
	b.Queue(topUpSQL, batchID, window).Query(func(rows pgx.Rows) error {
		var err error
		*next, err = pgx.CollectRows(rows, pgx.RowTo[int])
		return err
	})
}

// completeIfDone completes the batch if it is in progress and every record of
// it is counted, with its batch.completed event, and reports whether it did.
// It runs after the commit of each outcome, so of two records finishing at
// once, the check that starts last sees both. A worker dying in between
// leaves the batch to the reconciler, whose start completes it.
func (s records) completeIfDone(ctx context.Context, batchID uuid.UUID) (bool, error) {
	var done bool
	err := s.pool.QueryRow(ctx, `
		SELECT status = 'in_progress' AND total_records <= (
			SELECT coalesce(sum(succeeded + failed + cancelled), 0) FROM batch_counters WHERE batch_id = $1)
		FROM batches WHERE id = $1`, batchID).Scan(&done)
	if err != nil {
		return false, fmt.Errorf("check completion of %s: %w", batchID, err)
	}
	if !done {
		return false, nil
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		done, err = complete(ctx, tx, batchID)
		return err
	})
	return done, err
}

// complete marks the batch completed, with its batch.completed event, in tx
// when it is in progress and every record of it is counted.
func complete(ctx context.Context, tx pgx.Tx, batchID uuid.UUID) (bool, error) {
	var business uuid.UUID
	err := tx.QueryRow(ctx, `
		UPDATE batches SET status = 'completed', completed_at = now(), updated_at = now()
		WHERE id = $1 AND status = 'in_progress' AND total_records <= (
			SELECT coalesce(sum(succeeded + failed + cancelled), 0) FROM batch_counters WHERE batch_id = $1)
		RETURNING business_id`, batchID).Scan(&business)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("complete batch %s: %w", batchID, err)
	}
	return true, event.Record(ctx, tx, business, event.BatchCompleted, batchID.String())
}

// topUpSQL moves the batch's next records into its window of queued tasks,
// up to $2 records, and returns their rows; a batch not in progress gets
// none. Two records of one batch finishing at once may each add one, so the
// window can overshoot by the records finishing concurrently, never more;
// SKIP LOCKED keeps them from queueing the same row.
//
// Shortest remaining first: while another batch in progress has fewer records
// left, this one keeps a single record queued. A 10-record batch uploaded
// beside a 5,000-record one then takes most of the rate and finishes in about
// the time it would alone, and the large batch never stops.
const topUpSQL = `
		WITH me AS (
			SELECT status, total_records - succeeded_records - failed_records - cancelled_records AS remaining
			FROM batch_progress WHERE id = $1
		), share AS (
			SELECT CASE
				WHEN me.status <> 'in_progress' THEN 0
				WHEN EXISTS (
					SELECT 1 FROM batch_progress o
					WHERE o.status = 'in_progress' AND o.id <> $1
					  AND o.total_records - o.succeeded_records - o.failed_records - o.cancelled_records < me.remaining
				) THEN 1
				ELSE $2 END AS size
			FROM me
		), inflight AS (
			SELECT count(*) AS n FROM batch_records
			WHERE batch_id = $1 AND status = 'pending' AND queued_at IS NOT NULL
		), next AS (
			SELECT row_number FROM batch_records
			WHERE batch_id = $1 AND status = 'pending' AND queued_at IS NULL
			ORDER BY row_number
			LIMIT GREATEST((SELECT size FROM share) - (SELECT n FROM inflight), 0)
			FOR UPDATE SKIP LOCKED
		)
		UPDATE batch_records r SET queued_at = now()
		FROM next WHERE r.batch_id = $1 AND r.row_number = next.row_number
		RETURNING r.row_number`

// start marks a batch in progress and fills its first window. started is
// false when the batch is already finished or cancelled; completed is true
// when this call completed it (its last outcome's completion was lost).
func (s records) start(ctx context.Context, batchID uuid.UUID, window int) (next []int, started, completed bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE batches SET status = 'in_progress', started_at = COALESCE(started_at, now()), updated_at = now()
			WHERE id = $1 AND status IN ('pending', 'in_progress')`, batchID)
		if err != nil {
			return fmt.Errorf("start batch %s: %w", batchID, err)
		}
		if started = tag.RowsAffected() > 0; !started {
			return nil
		}
		rows, err := tx.Query(ctx, topUpSQL, batchID, window)
		if err == nil {
			next, err = pgx.CollectRows(rows, pgx.RowTo[int])
		}
		if err != nil {
			return fmt.Errorf("top up window of %s: %w", batchID, err)
		}
		// A batch left in progress with every record final (its last
		// outcome's worker died before completing it) is completed here, so
		// it cannot stay in progress for ever.
		completed, err = complete(ctx, tx, batchID)
		return err
	})
	return next, started, completed, err
}

// activeBatches returns the batches not yet finished, oldest first, for the reconciler.
func (s records) activeBatches(ctx context.Context, limit int) ([]uuid.UUID, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id FROM batches WHERE status IN ('pending', 'in_progress') ORDER BY created_at LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list active batches: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("list active batches: %w", err)
	}
	return ids, nil
}

// queuedRows returns the rows of the batch's window: pending records that should have a task.
func (s records) queuedRows(ctx context.Context, batchID uuid.UUID) ([]int, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT row_number FROM batch_records
		WHERE batch_id = $1 AND status = 'pending' AND queued_at IS NOT NULL ORDER BY row_number`, batchID)
	if err != nil {
		return nil, fmt.Errorf("list queued records of %s: %w", batchID, err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("list queued records of %s: %w", batchID, err)
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

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
