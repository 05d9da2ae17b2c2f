package ingest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/event"
)

// Outcome is how a record ends.
type Outcome struct {
	Status       string // RecordSucceeded, RecordFailed or RecordCancelled
	ApplicantID  string
	ReviewStatus string
	ReviewAnswer string
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

// Messages of our error codes.
const (
	msgEntityNotFound     = "entity not found"
	msgDuplicateCardToken = "cardProcessorPublicToken is already held by another entity"
	// MsgOutcomeUnknown explains CodeOutcomeUnknown.
	MsgOutcomeUnknown = "the answer to an earlier attempt was lost and the share token has since been used: check the applicant in Sumsub"
	// maxStoredMessageLength bounds an error message kept on a record.
	maxStoredMessageLength = 1000
)

// counterSlots is how many batch_counters rows count a batch's outcomes: a
// record is counted in slot row_number % counterSlots, so that the records
// of one batch finishing at once do not all wait for one row's lock.
const counterSlots = 16

// slot is the counter slot of a record.
func slot(row int) int { return row % counterSlots }

// storeOutcomeSQL stores a pending record's outcome ($1 batch, $2 row, $3
// status, $4 applicant, $5 review status, $6 review answer, $7 error code,
// $8 error message) and counts it in its counter slot $9; a record already
// final (an answer stored twice) is left alone, and the count is 0.
const storeOutcomeSQL = `
	WITH stored AS (
		UPDATE batch_records SET status = $3, applicant_id = $4, review_status = $5, review_answer = $6,
			error_code = $7, error_message = $8, processed_at = now(), share_token = NULL, queued_at = NULL,
			answered_attempts = CASE WHEN $3 = 'cancelled' THEN answered_attempts ELSE attempts END
		WHERE batch_id = $1 AND row_number = $2 AND status = 'pending'
		RETURNING status
	), counted AS (
		INSERT INTO batch_counters AS c (batch_id, slot, succeeded, failed, cancelled)
		SELECT $1, $9, (status = 'succeeded')::int, (status = 'failed')::int, (status = 'cancelled')::int FROM stored
		ON CONFLICT (batch_id, slot) DO UPDATE SET
			succeeded = c.succeeded + excluded.succeeded, failed = c.failed + excluded.failed,
			cancelled = c.cancelled + excluded.cancelled, updated_at = now()
	)
	SELECT count(*) FROM stored`

// Final is an outcome to store: of record Row of batch Batch, and of its
// claim when a call was made (nil: none was, as for a record cancelled).
type Final struct {
	Batch   uuid.UUID
	Row     int
	Claimed *Claimed
	Outcome Outcome
	// KYCStatus is the entity's new kycStatus when an applicant was imported.
	KYCStatus string
}

// Stored says what storing an outcome did.
type Stored struct {
	// Stored is false when the record was final already (a call's answer
	// stored twice): nothing was changed.
	Stored bool
	// BatchDone is true when every record of the batch was counted once
	// the outcome was committed: the caller then calls CompleteIfDone. Of
	// a group's outcomes, one per batch says so.
	BatchDone bool
}

// StoreOutcomes stores a group of outcomes (of distinct records) in one
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
func StoreOutcomes(ctx context.Context, pool *pgxpool.Pool, list []Final) (res []Stored, err error) {
	conn, err := pool.Acquire(ctx)
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

	res = make([]Stored, len(list))
	order := make([]int, len(list))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		a, b := list[i], list[j]
		return cmp.Or(bytes.Compare(a.Batch[:], b.Batch[:]), cmp.Compare(slot(a.Row), slot(b.Row)), cmp.Compare(a.Row, b.Row))
	})
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	for _, i := range order {
		queueOutcome(b, list[i].Batch, list[i].Row, list[i].Outcome, &res[i].Stored)
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
				Business: c.BusinessID, ExternalID: c.ExternalID, ApplicantID: o.ApplicantID, KYCStatus: list[i].KYCStatus, CardToken: c.CardToken,
			}, &linked[i])
		}
		if err = conn.SendBatch(ctx, b).Close(); err != nil {
			return nil, err
		}
	}

	b = &pgx.Batch{}
	for _, i := range links {
		f := list[i]
		if fixed, changed := linkedOutcome(f.Outcome, linked[i]); changed {
			b.Queue(correctOutcomeSQL, f.Batch, f.Row, f.Outcome.Status, fixed.Status, nullable(fixed.ReviewStatus),
				nullable(fixed.ReviewAnswer), nullable(fixed.ErrorCode), nullable(fixed.ErrorMessage), slot(f.Row))
		}
	}
	b.Queue("COMMIT")
	checked := make(map[uuid.UUID]bool)
	for _, i := range order {
		if id := list[i].Batch; res[i].Stored && !checked[id] {
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
func linkedOutcome(o Outcome, linked entity.Linked) (Outcome, bool) {
	fixed := o
	switch {
	case !linked.Found:
		fixed.Status, fixed.ErrorCode, fixed.ErrorMessage = RecordFailed, CodeEntityNotFound, msgEntityNotFound
	case linked.CardTaken:
		fixed.Status, fixed.ErrorCode, fixed.ErrorMessage = RecordFailed, CodeDuplicateCardToken, msgDuplicateCardToken
	}
	if linked.ReviewAnswer != "" {
		fixed.ReviewStatus, fixed.ReviewAnswer = "completed", linked.ReviewAnswer
	}
	return fixed, fixed != o
}

// correctOutcomeSQL corrects a record's stored outcome ($1 batch, $2 row,
// $3 the status stored, $4 the right one, $5 review status, $6 review
// answer, $7 error code, $8 error message) and moves its count between the
// columns of its counter slot $9.
const correctOutcomeSQL = `
	WITH fixed AS (
		UPDATE batch_records SET status = $4, review_status = $5, review_answer = $6, error_code = $7, error_message = $8
		WHERE batch_id = $1 AND row_number = $2
	)
	UPDATE batch_counters SET
		succeeded = succeeded - ($3 = 'succeeded')::int + ($4 = 'succeeded')::int,
		failed = failed - ($3 = 'failed')::int + ($4 = 'failed')::int
	WHERE batch_id = $1 AND slot = $9`

// queueOutcome queues the outcome's statement on b; stored reports whether it stored it.
func queueOutcome(b *pgx.Batch, batchID uuid.UUID, row int, o Outcome, stored *bool) {
	b.Queue(storeOutcomeSQL, batchID, row, o.Status, nullable(o.ApplicantID), nullable(o.ReviewStatus), nullable(o.ReviewAnswer),
		nullable(o.ErrorCode), nullable(truncate(o.ErrorMessage, maxStoredMessageLength)), slot(row)).QueryRow(func(row pgx.Row) error {
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

// CompleteIfDone completes the batch if it is active and every record of
// it is counted, with its batch.completed event, and reports whether it did.
// It runs once an outcome's commit found the batch done (StoreOutcomes), so
// of two records finishing at once, the check that starts last sees both.
// A worker dying in between leaves the batch to the reconciler, which
// completes it.
func CompleteIfDone(ctx context.Context, pool *pgxpool.Pool, batchID uuid.UUID) (bool, error) {
	var done bool
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		done, err = complete(ctx, tx, batchID)
		return err
	})
	return done, err
}

// complete marks the batch completed, with its batch.completed event, in tx
// when it is pending or in progress and every record of it is counted.
func complete(ctx context.Context, tx database.DB, batchID uuid.UUID) (bool, error) {
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
