package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/web"
)

// Batch is a stored batch with its counters.
type Batch struct {
	ID          uuid.UUID
	BusinessID  uuid.UUID
	Provider    string
	Status      string
	Total       int
	Succeeded   int
	Failed      int
	Cancelled   int
	CreatedAt   time.Time
	UpdatedAt   time.Time
	StartedAt   *time.Time
	CompletedAt *time.Time
}

// newBatch is what an upload stores besides its records.
type newBatch struct {
	ID             uuid.UUID
	BusinessID     uuid.UUID
	IdempotencyKey string
	FileKey        string
	FileSize       int64
	FileSHA256     []byte
}

// errKeyTaken is returned by create when another upload took the idempotency key first.
var errKeyTaken = errors.New("idempotency key taken")

// Store reads and writes batches and their records.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// keyUsed reports whether a batch of the business already holds the idempotency key.
func (s *Store) keyUsed(ctx context.Context, business uuid.UUID, key string) (bool, error) {
	var used bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM batches WHERE business_id = $1 AND idempotency_key = $2)`,
		business, key).Scan(&used)
	if err != nil {
		return false, fmt.Errorf("look up idempotency key: %w", err)
	}
	return used, nil
}

// cardTokenHeldElsewhere reports whether one of the card tokens (mapped to
// the external id of the row that carries it) is held by another entity of the business.
func (s *Store) cardTokenHeldElsewhere(ctx context.Context, business uuid.UUID, tokens map[string]uuid.UUID) (bool, error) {
	if len(tokens) == 0 {
		return false, nil
	}
	list := make([]string, 0, len(tokens))
	for t := range tokens {
		list = append(list, t)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT card_processor_public_token, external_id FROM entities
		WHERE business_id = $1 AND card_processor_public_token = ANY($2)`, business, list)
	if err != nil {
		return false, fmt.Errorf("look up card tokens: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var token string
		var holder uuid.UUID
		if err := rows.Scan(&token, &holder); err != nil {
			return false, fmt.Errorf("look up card tokens: %w", err)
		}
		if holder != tokens[token] {
			return true, nil
		}
	}
	return false, rows.Err()
}

// create stores the batch and all its records in one transaction. beforeCommit
// runs inside it (the upload stores the raw file there), so a failure anywhere
// leaves no row behind. A concurrent upload with the same idempotency key
// waits on the unique index until this one commits, then gets errKeyTaken.
func (s *Store) create(ctx context.Context, b newBatch, records []Record, beforeCommit func(context.Context) error) (Batch, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Batch{}, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit

	// A new batch has counted nothing: its counters are the zeros here.
	batch, err := scanBatch(tx.QueryRow(ctx, `
		INSERT INTO batches (id, business_id, idempotency_key, provider, total_records, file_key, file_size, file_sha256)
		VALUES ($1, $2, $3, 'sumsub', $4, $5, $6, $7)
		RETURNING id, business_id, provider, status, total_records, 0, 0, 0, created_at, updated_at, started_at, completed_at`,
		b.ID, b.BusinessID, b.IdempotencyKey, len(records), b.FileKey, b.FileSize, b.FileSHA256))
	if database.IsUniqueViolation(err, "batches_business_id_idempotency_key_key") {
		return Batch{}, errKeyTaken
	}
	if err != nil {
		return Batch{}, fmt.Errorf("insert batch: %w", err)
	}
	batchID := pgtype.UUID{Bytes: b.ID, Valid: true}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"batch_records"},
		[]string{"batch_id", "row_number", "external_id", "share_token", "applicant_level", "card_processor_public_token"},
		pgx.CopyFromSlice(len(records), func(i int) ([]any, error) {
			// pgtype values encode directly; uuid.UUID would go through
			// driver.Valuer and a failed plan per value (half the upload's CPU).
			r := records[i]
			return []any{batchID, int32(r.Row), pgtype.UUID{Bytes: r.ExternalID, Valid: true}, r.ShareToken,
				pgtype.Text{String: r.ApplicantLevel, Valid: r.ApplicantLevel != ""},
				pgtype.Text{String: r.CardProcessorPublicToken, Valid: r.CardProcessorPublicToken != ""}}, nil
		}))
	if err != nil {
		return Batch{}, fmt.Errorf("copy %d records: %w", len(records), err)
	}
	if err := beforeCommit(ctx); err != nil {
		return Batch{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Batch{}, fmt.Errorf("commit batch: %w", err)
	}
	return batch, nil
}

// Get returns the business's batch id, or ErrBatchNotFound.
func (s *Store) Get(ctx context.Context, business, id uuid.UUID) (Batch, error) {
	b, err := scanBatch(s.pool.QueryRow(ctx, `SELECT `+batchColumns+` FROM batch_progress WHERE id = $1 AND business_id = $2`, id, business))
	if errors.Is(err, pgx.ErrNoRows) {
		return Batch{}, ErrBatchNotFound
	}
	if err != nil {
		return Batch{}, fmt.Errorf("get batch %s: %w", id, err)
	}
	return b, nil
}

// byID returns batch id whoever owns it, for the worker's webhook events.
func (s *Store) byID(ctx context.Context, id uuid.UUID) (Batch, error) {
	b, err := scanBatch(s.pool.QueryRow(ctx, `SELECT `+batchColumns+` FROM batch_progress WHERE id = $1`, id))
	if err != nil {
		return Batch{}, fmt.Errorf("get batch %s: %w", id, err)
	}
	return b, nil
}

// batchColumns are read from the view batch_progress, which sums the counters.
const batchColumns = `id, business_id, provider, status, total_records, succeeded_records, failed_records,
	cancelled_records, created_at, progressed_at, started_at, completed_at`

func scanBatch(row pgx.Row) (Batch, error) {
	var b Batch
	err := row.Scan(&b.ID, &b.BusinessID, &b.Provider, &b.Status, &b.Total, &b.Succeeded, &b.Failed,
		&b.Cancelled, &b.CreatedAt, &b.UpdatedAt, &b.StartedAt, &b.CompletedAt)
	return b, err
}

// nullable stores an empty optional field as NULL.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
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
func (s *Store) record(ctx context.Context, batchID uuid.UUID, row int, lease time.Duration) (pendingRecord, error) {
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

// entityExists reports whether the business has an entity with the external id.
func (s *Store) entityExists(ctx context.Context, business, externalID uuid.UUID) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM entities WHERE business_id = $1 AND external_id = $2)`,
		business, externalID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up entity %s: %w", externalID, err)
	}
	return ok, nil
}

// claimed is a record whose attempt is marked, as the Sumsub call needs it.
type claimed struct {
	Attempt        int // this attempt's number, from 1
	Answered       int // attempts before it whose answer is known
	ShareToken     string
	ApplicantLevel string
}

// claim marks, before the call, that a Sumsub call starts for the record, in
// one statement on the common path: the record is pending, its batch in
// progress, its entity exists, and no earlier attempt may be in flight (one
// unanswered and younger than lease: another task may be calling Sumsub for
// the record, as when the reconciler re-enqueued a task Redis lost). ok is
// false, and nothing marked, when any of these fails; record tells which.
func (s *Store) claim(ctx context.Context, batchID uuid.UUID, row int, lease time.Duration) (c claimed, ok bool, err error) {
	var token, level *string
	err = s.pool.QueryRow(ctx, `
		UPDATE batch_records r SET attempts = r.attempts + 1, last_attempt_at = now()
		FROM batches b
		WHERE r.batch_id = $1 AND r.row_number = $2 AND r.status = 'pending'
		  AND b.id = r.batch_id AND b.status = 'in_progress'
		  AND (r.attempts = r.answered_attempts OR r.last_attempt_at <= now() - $3::interval)
		  AND EXISTS (SELECT 1 FROM entities e WHERE e.business_id = b.business_id AND e.external_id = r.external_id)
		RETURNING r.attempts, r.answered_attempts, r.share_token, r.applicant_level`, batchID, row, lease).
		Scan(&c.Attempt, &c.Answered, &token, &level)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("claim %s: %w", recordTaskID(batchID, row), err)
	}
	c.ShareToken, c.ApplicantLevel = deref(token), deref(level)
	return c, true, nil
}

// unmarkAttempt takes back an attempt marked for a call that was not made.
func (s *Store) unmarkAttempt(ctx context.Context, batchID uuid.UUID, row int) error {
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
func (s *Store) markAnswered(ctx context.Context, batchID uuid.UUID, row int) error {
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

// finish stores a record's outcome, the entity's new state and the batch's
// counters, and tops the batch's window up, in one round trip: the statements
// go as one pipelined batch, which PostgreSQL runs as one implicit
// transaction. It returns the rows to enqueue. A record that is already final
// is left alone (a task delivered twice): done is false then. The caller
// then calls completeIfDone.
//
// The record is locked first, so a concurrent finish of the same record
// waits, then finds it final. The entity takes the card token unless another
// entity of the business holds it; the record then fails with
// DUPLICATE_CARD_PROCESSOR_TOKEN, and with ENTITY_NOT_FOUND if the entity was
// deleted while the call was in flight. Two entities taking one token at the
// same instant violate the unique index: the transaction fails, and the
// caller's retry finds the token held.
func (s *Store) finish(ctx context.Context, batchID uuid.UUID, row int, o outcome, window int) (next []int, done bool, err error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT 1 FROM batch_records WHERE batch_id = $1 AND row_number = $2 AND status = 'pending' FOR UPDATE`, batchID, row)
	if o.ApplicantID != "" {
		b.Queue(`
			UPDATE entities e SET sumsub_applicant_id = $3, updated_at = now(),
				-- A review webhook may have come before this link: its answer wins.
				kyc_status = coalesce((
					SELECT CASE review_answer WHEN 'GREEN' THEN 'APPROVED' ELSE 'REJECTED' END
					FROM sumsub_reviews WHERE applicant_id = $3
					ORDER BY reviewed_at DESC NULLS LAST, received_at DESC LIMIT 1), $4),
				card_processor_public_token = CASE
					WHEN r.card_processor_public_token IS NULL OR EXISTS (
						SELECT 1 FROM entities o WHERE o.business_id = e.business_id
						  AND o.card_processor_public_token = r.card_processor_public_token AND o.id <> e.id)
					THEN e.card_processor_public_token
					ELSE r.card_processor_public_token END
			FROM batch_records r JOIN batches b ON b.id = r.batch_id
			WHERE r.batch_id = $1 AND r.row_number = $2 AND r.status = 'pending'
			  AND e.business_id = b.business_id AND e.external_id = r.external_id`,
			batchID, row, o.ApplicantID, o.KYCStatus)
	}
	// The outcome, corrected as the entity's update turned out, and counted.
	b.Queue(`
		WITH fate AS (
			SELECT r.batch_id, r.row_number, CASE
				WHEN $9 = '' THEN NULL
				WHEN e.id IS NULL THEN $10
				WHEN r.card_processor_public_token IS NOT NULL
				  AND e.card_processor_public_token IS DISTINCT FROM r.card_processor_public_token THEN $11
				END AS failure
			FROM batch_records r JOIN batches b ON b.id = r.batch_id
			LEFT JOIN entities e ON e.business_id = b.business_id AND e.external_id = r.external_id
			WHERE r.batch_id = $1 AND r.row_number = $2 AND r.status = 'pending'
		), stored AS (
			UPDATE batch_records r SET
				status = CASE WHEN fate.failure IS NULL THEN $3 ELSE 'failed' END,
				-- A review webhook may have come before this record's outcome.
				applicant_id = $4,
				review_status = coalesce((SELECT 'completed' FROM sumsub_reviews WHERE applicant_id = $4 LIMIT 1), $5),
				review_answer = coalesce((
					SELECT review_answer FROM sumsub_reviews WHERE applicant_id = $4
					ORDER BY reviewed_at DESC NULLS LAST, received_at DESC LIMIT 1), $6),
				error_code = CASE fate.failure WHEN $10 THEN $12 WHEN $11 THEN $13 ELSE $7 END,
				error_message = CASE fate.failure WHEN $10 THEN $14 WHEN $11 THEN $15 ELSE $8 END,
				processed_at = now(), share_token = NULL,
				answered_attempts = CASE WHEN $3 = 'cancelled' THEN answered_attempts ELSE attempts END
			FROM fate WHERE r.batch_id = fate.batch_id AND r.row_number = fate.row_number
			RETURNING r.status
		), counted AS (
			INSERT INTO batch_counters AS c (batch_id, slot, succeeded, failed, cancelled)
			SELECT $1, $2 % 16, (status = 'succeeded')::int, (status = 'failed')::int, (status = 'cancelled')::int FROM stored
			ON CONFLICT (batch_id, slot) DO UPDATE SET
				succeeded = c.succeeded + excluded.succeeded, failed = c.failed + excluded.failed,
				cancelled = c.cancelled + excluded.cancelled, updated_at = now()
		)
		SELECT count(*) FROM stored`,
		batchID, row, o.Status, nullable(o.ApplicantID), nullable(o.ReviewStatus), nullable(o.ReviewAnswer),
		nullable(o.ErrorCode), nullable(truncate(o.ErrorMessage, maxStoredMessageLength)),
		o.ApplicantID, "entity", "card", CodeEntityNotFound, CodeDuplicateCardToken, msgEntityNotFound, msgDuplicateCardToken)
	b.Queue(topUpSQL, batchID, window)

	results := s.pool.SendBatch(ctx, b)
	defer results.Close()
	for range b.Len() - 2 { // the lock and the entity's update
		if _, err := results.Exec(); err != nil {
			return nil, false, fmt.Errorf("store outcome of %s: %w", recordTaskID(batchID, row), err)
		}
	}
	var stored int
	if err := results.QueryRow().Scan(&stored); err != nil {
		return nil, false, fmt.Errorf("store outcome of %s: %w", recordTaskID(batchID, row), err)
	}
	rows, err := results.Query()
	if err == nil {
		next, err = pgx.CollectRows(rows, pgx.RowTo[int])
	}
	if err != nil {
		return nil, false, fmt.Errorf("top up window of %s: %w", batchID, err)
	}
	if err := results.Close(); err != nil {
		return nil, false, fmt.Errorf("commit outcome of %s: %w", recordTaskID(batchID, row), err)
	}
	if stored == 0 {
		return nil, false, nil
	}
	return next, true, nil
}

// completeIfDone completes the batch if it is in progress and every record of
// it is counted, and reports whether it did. It runs after the commit of each
// outcome, so of two records finishing at once, the check that starts last
// sees both. A worker dying in between leaves the batch to the reconciler,
// whose start completes it.
func (s *Store) completeIfDone(ctx context.Context, batchID uuid.UUID) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE batches SET status = 'completed', completed_at = now(), updated_at = now()
		WHERE id = $1 AND status = 'in_progress'
		  AND total_records <= (
			SELECT coalesce(sum(succeeded + failed + cancelled), 0) FROM batch_counters WHERE batch_id = $1)`, batchID)
	if err != nil {
		return false, fmt.Errorf("complete batch %s: %w", batchID, err)
	}
	return tag.RowsAffected() > 0, nil
}

// topUp moves the batch's next records into its window of queued tasks, up to
// window records, and returns their rows; a batch not in progress gets none.
// Two records of one batch finishing at once may each add one, so the window
// can overshoot by the records finishing concurrently, never more; SKIP
// LOCKED keeps them from queueing the same row.
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

func topUp(ctx context.Context, tx pgx.Tx, batchID uuid.UUID, window int) ([]int, error) {
	rows, err := tx.Query(ctx, topUpSQL, batchID, window)
	if err != nil {
		return nil, fmt.Errorf("top up window of %s: %w", batchID, err)
	}
	next, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("top up window of %s: %w", batchID, err)
	}
	return next, nil
}

// start marks a batch in progress and fills its first window. started is
// false when the batch is already finished or cancelled; completed is true
// when this call completed it (its last outcome's completion was lost).
func (s *Store) start(ctx context.Context, batchID uuid.UUID, window int) (next []int, started, completed bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, false, false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	tag, err := tx.Exec(ctx, `
		UPDATE batches SET status = 'in_progress', started_at = COALESCE(started_at, now()), updated_at = now()
		WHERE id = $1 AND status IN ('pending', 'in_progress')`, batchID)
	if err != nil {
		return nil, false, false, fmt.Errorf("start batch %s: %w", batchID, err)
	}
	if tag.RowsAffected() == 0 {
		return nil, false, false, nil
	}
	if next, err = topUp(ctx, tx, batchID, window); err != nil {
		return nil, false, false, err
	}
	// A batch left in progress with every record final (which finish
	// prevents) is completed here, so it cannot stay in progress for ever.
	done, err := tx.Exec(ctx, `
		UPDATE batches SET status = 'completed', completed_at = now(), updated_at = now()
		WHERE id = $1 AND status = 'in_progress'
		  AND NOT EXISTS (SELECT 1 FROM batch_records WHERE batch_id = $1 AND status = 'pending')`, batchID)
	if err != nil {
		return nil, false, false, fmt.Errorf("complete batch %s: %w", batchID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, false, false, fmt.Errorf("commit start of %s: %w", batchID, err)
	}
	return next, true, done.RowsAffected() > 0, nil
}

// cancel stops a pending or in-progress batch of the business: records never
// sent to Sumsub become cancelled; records with a call made finish normally.
// stopped is false when the batch was cancelled before.
func (s *Store) cancel(ctx context.Context, business, batchID uuid.UUID) (b Batch, stopped bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Batch{}, false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	var status string
	err = tx.QueryRow(ctx, `SELECT status FROM batches WHERE id = $1 AND business_id = $2 FOR UPDATE`, batchID, business).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return Batch{}, false, ErrBatchNotFound
	}
	if err != nil {
		return Batch{}, false, fmt.Errorf("lock batch %s: %w", batchID, err)
	}
	switch status {
	case "completed", "failed":
		return Batch{}, false, ErrBatchFinished
	case "pending", "in_progress":
		tag, err := tx.Exec(ctx, `
			UPDATE batch_records SET status = 'cancelled', share_token = NULL, processed_at = now()
			WHERE batch_id = $1 AND status = 'pending' AND attempts = 0`, batchID)
		if err != nil {
			return Batch{}, false, fmt.Errorf("cancel records of %s: %w", batchID, err)
		}
		_, err = tx.Exec(ctx, `
			WITH counted AS (
				INSERT INTO batch_counters AS c (batch_id, slot, cancelled) VALUES ($1, 0, $2)
				ON CONFLICT (batch_id, slot) DO UPDATE SET cancelled = c.cancelled + excluded.cancelled, updated_at = now()
			)
			UPDATE batches SET status = 'cancelled', completed_at = now(), updated_at = now()
			WHERE id = $1`, batchID, tag.RowsAffected())
		if err != nil {
			return Batch{}, false, fmt.Errorf("cancel batch %s: %w", batchID, err)
		}
		stopped = true
	}
	b, err = scanBatch(tx.QueryRow(ctx, `SELECT `+batchColumns+` FROM batch_progress WHERE id = $1`, batchID))
	if err != nil {
		return Batch{}, false, fmt.Errorf("read batch %s: %w", batchID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Batch{}, false, fmt.Errorf("commit cancel of %s: %w", batchID, err)
	}
	return b, stopped, nil
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

// activeBatches returns the batches not yet finished, oldest first, for the reconciler.
func (s *Store) activeBatches(ctx context.Context, limit int) ([]uuid.UUID, error) {
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
func (s *Store) queuedRows(ctx context.Context, batchID uuid.UUID) ([]int, error) {
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

// RecordResult is a record as the API shows it; it never carries the share token.
type RecordResult struct {
	Row          int       `json:"row"`
	ExternalID   uuid.UUID `json:"externalId"`
	Status       string    `json:"status"`
	ApplicantID  *string   `json:"applicantId"`
	ReviewStatus *string   `json:"reviewStatus"`
	ErrorCode    *string   `json:"errorCode"`
	ErrorMessage *string   `json:"errorMessage"`
	Attempts     int       `json:"attempts"`
	ProcessedAt  *web.Time `json:"processedAt"`
}

// records returns up to limit records of a batch after row `after`, in row
// order, with the given status (any when empty).
func (s *Store) records(ctx context.Context, batchID uuid.UUID, status string, after, limit int) ([]RecordResult, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT row_number, external_id, status, applicant_id, review_status, error_code, error_message, attempts, processed_at
		FROM batch_records
		WHERE batch_id = $1 AND ($2 = '' OR status = $2) AND row_number > $3
		ORDER BY row_number LIMIT $4`, batchID, status, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list records of %s: %w", batchID, err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RecordResult, error) {
		var rec RecordResult
		var processed *time.Time
		err := r.Scan(&rec.Row, &rec.ExternalID, &rec.Status, &rec.ApplicantID, &rec.ReviewStatus,
			&rec.ErrorCode, &rec.ErrorMessage, &rec.Attempts, &processed)
		rec.ProcessedAt = web.TimePtr(processed)
		return rec, err
	})
	if err != nil {
		return nil, fmt.Errorf("list records of %s: %w", batchID, err)
	}
	return list, nil
}

// errorGroups counts a batch's failed records by error, largest groups first.
func (s *Store) errorGroups(ctx context.Context, batchID uuid.UUID, limit int) ([]errorGroup, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT error_code, error_message, count(*) FROM batch_records
		WHERE batch_id = $1 AND status = 'failed'
		GROUP BY error_code, error_message
		ORDER BY count(*) DESC, error_code LIMIT $2`, batchID, limit)
	if err != nil {
		return nil, fmt.Errorf("group errors of %s: %w", batchID, err)
	}
	groups, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (errorGroup, error) {
		var g errorGroup
		var code, message *string
		err := r.Scan(&code, &message, &g.Count)
		g.Code, g.Message = deref(code), deref(message)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("group errors of %s: %w", batchID, err)
	}
	return groups, nil
}

// pendingWork returns how many records each unfinished batch still has to
// send, for every batch of every business: they all share the Sumsub rate.
func (s *Store) pendingWork(ctx context.Context) (map[uuid.UUID]int, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, total_records - succeeded_records - failed_records - cancelled_records FROM batch_progress
		WHERE status IN ('pending', 'in_progress')`)
	if err != nil {
		return nil, fmt.Errorf("count pending work: %w", err)
	}
	defer rows.Close()
	work := make(map[uuid.UUID]int)
	for rows.Next() {
		var id uuid.UUID
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("count pending work: %w", err)
		}
		work[id] = n
	}
	return work, rows.Err()
}
