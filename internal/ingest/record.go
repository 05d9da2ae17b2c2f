package ingest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/event"
)

// The record state machine: a pending record is claimed for each Sumsub
// call (its attempt marked before the call), put back to wait out a retry
// when the call fails for a while, and finished once with its outcome
// (succeeded, failed or cancelled), its entity's update and its batch's
// counters; the last record completes its batch. The functions below are
// its SQL; pipeline.go drives it.

// records reads and writes the records of batches for the pipeline.
type records struct {
	pool *pgxpool.Pool
}

// claimed is a record whose attempt is marked, as the Sumsub call and the
// outcome's entity update need it.
type claimed struct {
	BatchID        uuid.UUID
	Row            int
	Attempt        int // this attempt's number, from 1
	Answered       int // attempts before it whose answer is known
	Refusals       int // Sumsub's 429s before it
	ShareToken     string
	ApplicantLevel string
	BusinessID     uuid.UUID
	ExternalID     uuid.UUID
	CardToken      string
	// Traceparent is the batch's dispatch span, the parent of the record's
	// span; "" when the upload was not traced.
	Traceparent string
}

// eligibleSQL is the condition on a pending record r that may be sent now:
// no call of it in flight (every attempt answered, or the last one older
// than the lease $lease: its worker died), and no retry to wait out.
const eligibleSQL = `(r.attempts = r.answered_attempts OR r.last_attempt_at <= now() - %s::interval)
	AND (r.retry_at IS NULL OR r.retry_at <= now())`

// claim takes the batch's first records after row `after` that may be
// sent now, at most n of them, and marks that a Sumsub call starts for each,
// before the call, in one statement; the batch goes in progress with its
// first record. It returns them in row order: none when the batch has no
// such record (the scheduler's count was ahead) or is no longer pending or
// in progress. Two claims at once take different records.
//
// after spares the claim the index entries of the records already final
// before it (they stay in the index of pending records until a vacuum): a
// claim from the batch's start walks past all of them.
func (s records) claim(ctx context.Context, batchID uuid.UUID, after int, lease time.Duration, n int) ([]claimed, error) {
	rows, err := s.pool.Query(ctx, `
		WITH next AS (
			SELECT r.row_number FROM batch_records r
			WHERE r.batch_id = $1 AND r.status = 'pending' AND r.row_number > $3 AND `+fmt.Sprintf(eligibleSQL, "$2")+`
			ORDER BY r.row_number LIMIT $4 FOR UPDATE SKIP LOCKED
		), started AS (
			UPDATE batches SET status = 'in_progress', started_at = now(), updated_at = now()
			WHERE id = $1 AND status = 'pending' AND EXISTS (SELECT 1 FROM next)
		)
		UPDATE batch_records r SET attempts = r.attempts + 1, last_attempt_at = now(), retry_at = NULL
		FROM next, batches b
		WHERE r.batch_id = $1 AND r.row_number = next.row_number
		  AND b.id = r.batch_id AND b.status IN ('pending', 'in_progress')
		RETURNING r.row_number, r.attempts, r.answered_attempts, r.refusals, r.share_token, r.applicant_level,
			b.business_id, r.external_id, r.card_processor_public_token, b.traceparent`, batchID, lease, after, n)
	if err != nil {
		return nil, fmt.Errorf("claim records of %s: %w", batchID, err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (claimed, error) {
		c := claimed{BatchID: batchID}
		var token, level, card, traceparent *string
		err := row.Scan(&c.Row, &c.Attempt, &c.Answered, &c.Refusals, &token, &level, &c.BusinessID, &c.ExternalID, &card, &traceparent)
		c.ShareToken, c.ApplicantLevel, c.CardToken, c.Traceparent = deref(token), deref(level), deref(card), deref(traceparent)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim records of %s: %w", batchID, err)
	}
	slices.SortFunc(list, func(a, b claimed) int { return cmp.Compare(a.Row, b.Row) })
	return list, nil
}

// eligible counts the batch's records that may be sent now.
func (s records) eligible(ctx context.Context, batchID uuid.UUID, lease time.Duration) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `
		SELECT count(*) FROM batch_records r
		WHERE r.batch_id = $1 AND r.status = 'pending' AND `+fmt.Sprintf(eligibleSQL, "$2"), batchID, lease).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the records of %s to send: %w", batchID, err)
	}
	return n, nil
}

// unmarkAttempt takes back an attempt marked for a call that was not made.
func (s records) unmarkAttempt(ctx context.Context, c *claimed) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE batch_records SET attempts = attempts - 1
		WHERE batch_id = $1 AND row_number = $2 AND status = 'pending' AND attempts > 0`, c.BatchID, c.Row)
	if err != nil {
		return fmt.Errorf("unmark attempt of %s: %w", recordID(c.BatchID, c.Row), err)
	}
	return nil
}

// answer is what became of a call that will be made again.
type answer int

const (
	// lost: no answer came (a timeout): the call may have reached Sumsub,
	// so the attempt stays unanswered.
	lost answer = iota
	// unused: Sumsub refused the call without running it (503): the share
	// token is unused, so it cannot explain a later invalid-share-token.
	unused
	// refused: Sumsub refused the call with 429: not an attempt at all.
	refused
	// unrun: Sumsub refused the call unrun for a reason not the record's
	// (an outage, our credentials): not an attempt, nor a refusal.
	unrun
)

// retryLater puts a claimed record back to wait until at, recording what
// became of its call.
func (s records) retryLater(ctx context.Context, c *claimed, a answer, at time.Time) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE batch_records SET retry_at = $3,
			attempts = attempts - $4 - $6, refusals = refusals + $4, answered_attempts = answered_attempts + $5
		WHERE batch_id = $1 AND row_number = $2 AND status = 'pending'`,
		c.BatchID, c.Row, at, b2i(a == refused), b2i(a == unused), b2i(a == unrun))
	if err != nil {
		return fmt.Errorf("put %s back until %s: %w", recordID(c.BatchID, c.Row), at.Format(time.RFC3339), err)
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
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

// counterSlots is how many batch_counters rows count a batch's outcomes:
// record row_number goes in slot row_number % 16 (the SQL below says 16).
const counterSlots = 16

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

// toStore is an outcome to store: of record Row of batch BatchID, and of
// its claim c when a call was made (nil: none was, as for a record cancelled).
type toStore struct {
	BatchID uuid.UUID
	Row     int
	Claimed *claimed
	Outcome outcome
}

// storeResult says what storing an outcome did.
type storeResult struct {
	// Stored is false when the record was final already (a call's answer
	// stored twice): nothing was changed.
	Stored bool
	// BatchDone is true when every record of the batch was counted once
	// the outcome was committed: the caller then calls completeIfDone. Of
	// a group's outcomes, one per batch says so.
	BatchDone bool
}

// store stores a group of outcomes (of distinct records) in one
// transaction: each record's outcome, its batch's counters and, when an
// applicant was imported, the entity's update. Three round trips however
// many outcomes: the first, with its BEGIN, stores the outcomes as the
// calls have them; the second links the imported applicants to their
// entities; the third corrects the records whose link decided otherwise
// (the card token held by another entity, the entity gone, a review
// recorded first), commits, and then checks whether their batches are done
// (after the commit: of two records finishing at once, the check that
// starts last sees both).
//
// Locks are taken in one order (records and counter slots by batch and
// slot, then entities by business and external id), so that groups stored
// at once by several workers wait for each other instead of deadlocking.
func (s records) store(ctx context.Context, list []toStore) (res []storeResult, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	// A connection an error left inside the transaction is rolled back; if
	// even that fails, the pool closes it on release rather than reuse it.
	defer conn.Release()
	defer func() {
		if err != nil && conn.Conn().PgConn().TxStatus() != 'I' {
			conn.Exec(context.WithoutCancel(ctx), "ROLLBACK") //nolint:errcheck // see above
		}
	}()

	res = make([]storeResult, len(list))
	order := make([]int, len(list))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		a, b := list[i], list[j]
		return cmp.Or(bytes.Compare(a.BatchID[:], b.BatchID[:]), cmp.Compare(a.Row%counterSlots, b.Row%counterSlots), cmp.Compare(a.Row, b.Row))
	})
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	for _, i := range order {
		queueOutcome(b, list[i].BatchID, list[i].Row, list[i].Outcome, &res[i].Stored)
	}
	if err = conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}

	var links []int
	for _, i := range order {
		if res[i].Stored && list[i].Outcome.ApplicantID != "" {
			links = append(links, i)
		}
	}
	linked := make([]entity.Linked, len(list))
	if len(links) > 0 {
		slices.SortFunc(links, func(i, j int) int {
			a, b := list[i].Claimed, list[j].Claimed
			return cmp.Or(bytes.Compare(a.BusinessID[:], b.BusinessID[:]), bytes.Compare(a.ExternalID[:], b.ExternalID[:]))
		})
		b = &pgx.Batch{}
		for _, i := range links {
			c, o := list[i].Claimed, list[i].Outcome
			entity.QueueLinkApplicant(b, entity.Link{
				Business: c.BusinessID, ExternalID: c.ExternalID, ApplicantID: o.ApplicantID, KYCStatus: o.KYCStatus, CardToken: c.CardToken,
			}, &linked[i])
		}
		if err = conn.SendBatch(ctx, b).Close(); err != nil {
			return nil, err
		}
	}

	b = &pgx.Batch{}
	for _, i := range links {
		t := list[i]
		if fixed, changed := linkedOutcome(t.Outcome, linked[i]); changed {
			b.Queue(correctOutcomeSQL, t.BatchID, t.Row, t.Outcome.Status, fixed.Status, nullable(fixed.ReviewStatus),
				nullable(fixed.ReviewAnswer), nullable(fixed.ErrorCode), nullable(fixed.ErrorMessage))
		}
	}
	b.Queue("COMMIT")
	checked := make(map[uuid.UUID]bool)
	for _, i := range order {
		if id := list[i].BatchID; res[i].Stored && !checked[id] {
			checked[id] = true
			b.Queue(batchDoneSQL, id).QueryRow(func(row pgx.Row) error { return row.Scan(&res[i].BatchDone) })
		}
	}
	if err = conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return res, nil
}

// linkedOutcome is the outcome as the entity's link decides it, and
// whether that differs from the import's.
func linkedOutcome(o outcome, linked entity.Linked) (outcome, bool) {
	fixed := o
	switch {
	case !linked.Found:
		fixed.Status, fixed.ErrorCode, fixed.ErrorMessage = "failed", CodeEntityNotFound, msgEntityNotFound
	case linked.CardTaken:
		fixed.Status, fixed.ErrorCode, fixed.ErrorMessage = "failed", CodeDuplicateCardToken, msgDuplicateCardToken
	}
	if linked.ReviewAnswer != "" {
		fixed.ReviewStatus, fixed.ReviewAnswer = "completed", linked.ReviewAnswer
	}
	return fixed, fixed != o
}

// correctOutcomeSQL corrects a record's stored outcome ($1 batch, $2 row,
// $3 the status stored, $4 the right one, $5 review status, $6 review
// answer, $7 error code, $8 error message) and moves its count between the
// counter slot's columns.
const correctOutcomeSQL = `
	WITH fixed AS (
		UPDATE batch_records SET status = $4, review_status = $5, review_answer = $6, error_code = $7, error_message = $8
		WHERE batch_id = $1 AND row_number = $2
	)
	UPDATE batch_counters SET
		succeeded = succeeded - ($3 = 'succeeded')::int + ($4 = 'succeeded')::int,
		failed = failed - ($3 = 'failed')::int + ($4 = 'failed')::int
	WHERE batch_id = $1 AND slot = $2 % 16`

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

// batchDoneSQL says whether batch $1 is active with every record counted.
const batchDoneSQL = `
	SELECT status IN ('pending', 'in_progress') AND total_records <= (
		SELECT coalesce(sum(succeeded + failed + cancelled), 0) FROM batch_counters WHERE batch_id = $1)
	FROM batches WHERE id = $1`

// completeIfDone completes the batch if it is active and every record of
// it is counted, with its batch.completed event, and reports whether it did.
// It runs once an outcome's commit found the batch done (store), so of two
// records finishing at once, the check that starts last sees both. A worker
// dying in between leaves the batch to the reconciler, whose start
// completes it.
func (s records) completeIfDone(ctx context.Context, batchID uuid.UUID) (bool, error) {
	var done bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		done, err = complete(ctx, tx, batchID)
		return err
	})
	return done, err
}

// complete marks the batch completed, with its batch.completed event, in tx
// when it is pending or in progress and every record of it is counted.
func complete(ctx context.Context, tx pgx.Tx, batchID uuid.UUID) (bool, error) {
	var business uuid.UUID
	err := tx.QueryRow(ctx, `
		UPDATE batches SET status = 'completed', started_at = coalesce(started_at, now()), completed_at = now(), updated_at = now()
		WHERE id = $1 AND status IN ('pending', 'in_progress') AND total_records <= (
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
