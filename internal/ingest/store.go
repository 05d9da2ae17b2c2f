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

	batch, err := scanBatch(tx.QueryRow(ctx, `
		INSERT INTO batches (id, business_id, idempotency_key, provider, total_records, file_key, file_size, file_sha256)
		VALUES ($1, $2, $3, 'sumsub', $4, $5, $6, $7)
		RETURNING `+batchColumns, b.ID, b.BusinessID, b.IdempotencyKey, len(records), b.FileKey, b.FileSize, b.FileSHA256))
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
	b, err := scanBatch(s.pool.QueryRow(ctx, `SELECT `+batchColumns+` FROM batches WHERE id = $1 AND business_id = $2`, id, business))
	if errors.Is(err, pgx.ErrNoRows) {
		return Batch{}, ErrBatchNotFound
	}
	if err != nil {
		return Batch{}, fmt.Errorf("get batch %s: %w", id, err)
	}
	return b, nil
}

const batchColumns = `id, business_id, provider, status, total_records, succeeded_records, failed_records,
	cancelled_records, created_at, updated_at, started_at, completed_at`

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

// pendingRecord is a record as the import task needs it.
type pendingRecord struct {
	BusinessID     uuid.UUID
	BatchStatus    string
	Status         string
	ExternalID     uuid.UUID
	ShareToken     string
	ApplicantLevel string
	Attempts       int
	Answered       int
}

// errNoRecord says a task names a record that does not exist (its batch was deleted).
var errNoRecord = errors.New("record not found")

// record returns a record with its batch's state.
func (s *Store) record(ctx context.Context, batchID uuid.UUID, row int) (pendingRecord, error) {
	var r pendingRecord
	var token, level *string
	err := s.pool.QueryRow(ctx, `
		SELECT b.business_id, b.status, r.status, r.external_id, r.share_token, r.applicant_level, r.attempts, r.answered_attempts
		FROM batch_records r JOIN batches b ON b.id = r.batch_id
		WHERE r.batch_id = $1 AND r.row_number = $2`, batchID, row).
		Scan(&r.BusinessID, &r.BatchStatus, &r.Status, &r.ExternalID, &token, &level, &r.Attempts, &r.Answered)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, errNoRecord
	}
	if err != nil {
		return r, fmt.Errorf("load record %s: %w", recordTaskID(batchID, row), err)
	}
	r.ShareToken, r.ApplicantLevel = deref(token), deref(level)
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

// markAttempt records, before the call, that a Sumsub call starts for the
// record, and returns the attempt's number. It returns 0 when the record is
// no longer to be sent (finished meanwhile, or its batch cancelled), and
// busy > 0, marking nothing, while an earlier attempt is unanswered and
// younger than lease: another task may be calling Sumsub for the record.
func (s *Store) markAttempt(ctx context.Context, batchID uuid.UUID, row int, lease time.Duration) (attempt int, busy time.Duration, err error) {
	err = s.pool.QueryRow(ctx, `
		UPDATE batch_records r SET attempts = r.attempts + 1, last_attempt_at = now()
		FROM batches b
		WHERE r.batch_id = $1 AND r.row_number = $2 AND r.status = 'pending'
		  AND b.id = r.batch_id AND b.status = 'in_progress'
		  AND (r.attempts = r.answered_attempts OR r.last_attempt_at <= now() - $3::interval)
		RETURNING r.attempts`, batchID, row, lease).Scan(&attempt)
	if err == nil {
		return attempt, 0, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("mark attempt of %s: %w", recordTaskID(batchID, row), err)
	}
	var left time.Duration
	err = s.pool.QueryRow(ctx, `
		SELECT r.last_attempt_at + $3::interval - now()
		FROM batch_records r JOIN batches b ON b.id = r.batch_id
		WHERE r.batch_id = $1 AND r.row_number = $2 AND r.status = 'pending' AND b.status = 'in_progress'`,
		batchID, row, lease).Scan(&left)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, 0, nil
	case err != nil:
		return 0, 0, fmt.Errorf("read attempt of %s: %w", recordTaskID(batchID, row), err)
	}
	return 0, max(left, 100*time.Millisecond), nil
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
	cardTokenUniqueIndex   = "entities_business_id_card_processor_public_token_key"
)

// finish stores a record's outcome, the entity's new state and the batch's
// counters in one transaction; the last record completes the batch. It tops
// the batch's window up and returns the rows to enqueue once committed. A
// record that is already final is left alone (a task delivered twice):
// done is false then.
func (s *Store) finish(ctx context.Context, batchID uuid.UUID, row int, o outcome, window int) (next []int, done bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit

	var business, externalID uuid.UUID
	var card *string
	err = tx.QueryRow(ctx, `
		SELECT b.business_id, r.external_id, r.card_processor_public_token
		FROM batch_records r JOIN batches b ON b.id = r.batch_id
		WHERE r.batch_id = $1 AND r.row_number = $2 AND r.status = 'pending'
		FOR UPDATE OF r`, batchID, row).Scan(&business, &externalID, &card)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("lock record: %w", err)
	}

	if o.ApplicantID != "" {
		if o, err = updateEntity(ctx, tx, business, externalID, card, o); err != nil {
			return nil, false, err
		}
	}
	_, err = tx.Exec(ctx, `
		UPDATE batch_records SET status = $3, applicant_id = $4, review_status = $5, review_answer = $6,
			error_code = $7, error_message = $8, processed_at = now(), share_token = NULL,
			answered_attempts = CASE WHEN $3 = 'cancelled' THEN answered_attempts ELSE attempts END
		WHERE batch_id = $1 AND row_number = $2`,
		batchID, row, o.Status, nullable(o.ApplicantID), nullable(o.ReviewStatus), nullable(o.ReviewAnswer),
		nullable(o.ErrorCode), nullable(truncate(o.ErrorMessage, maxStoredMessageLength)))
	if err != nil {
		return nil, false, fmt.Errorf("store outcome: %w", err)
	}
	var succeeded, failed, cancelled int
	switch o.Status {
	case "succeeded":
		succeeded = 1
	case "failed":
		failed = 1
	default:
		cancelled = 1
	}
	var status string
	err = tx.QueryRow(ctx, `
		UPDATE batches SET
			succeeded_records = succeeded_records + $2,
			failed_records = failed_records + $3,
			cancelled_records = cancelled_records + $4,
			status = CASE WHEN status = 'in_progress'
				AND succeeded_records + failed_records + cancelled_records + $2 + $3 + $4 >= total_records
				THEN 'completed' ELSE status END,
			completed_at = CASE WHEN status = 'in_progress'
				AND succeeded_records + failed_records + cancelled_records + $2 + $3 + $4 >= total_records
				THEN now() ELSE completed_at END,
			updated_at = now()
		WHERE id = $1
		RETURNING status`, batchID, succeeded, failed, cancelled).Scan(&status)
	if err != nil {
		return nil, false, fmt.Errorf("count outcome: %w", err)
	}
	if status == "in_progress" {
		if next, err = topUp(ctx, tx, batchID, window); err != nil {
			return nil, false, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, false, fmt.Errorf("commit outcome: %w", err)
	}
	return next, true, nil
}

// updateEntity links the imported applicant to the entity. The card token is
// unique per business: when another entity holds it, the entity keeps its
// applicant but not the token, and the record fails.
func updateEntity(ctx context.Context, tx pgx.Tx, business, externalID uuid.UUID, card *string, o outcome) (outcome, error) {
	const update = `
		UPDATE entities SET sumsub_applicant_id = $3, kyc_status = $4,
			card_processor_public_token = COALESCE($5, card_processor_public_token), updated_at = now()
		WHERE business_id = $1 AND external_id = $2`
	if _, err := tx.Exec(ctx, "SAVEPOINT entity"); err != nil {
		return o, fmt.Errorf("savepoint: %w", err)
	}
	tag, err := tx.Exec(ctx, update, business, externalID, o.ApplicantID, o.KYCStatus, card)
	if database.IsUniqueViolation(err, cardTokenUniqueIndex) {
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT entity"); err != nil {
			return o, fmt.Errorf("rollback to savepoint: %w", err)
		}
		if tag, err = tx.Exec(ctx, update, business, externalID, o.ApplicantID, o.KYCStatus, nil); err != nil {
			return o, fmt.Errorf("update entity %s: %w", externalID, err)
		}
		o.Status, o.ErrorCode, o.ErrorMessage = "failed", CodeDuplicateCardToken, msgDuplicateCardToken
	} else if err != nil {
		return o, fmt.Errorf("update entity %s: %w", externalID, err)
	}
	if tag.RowsAffected() == 0 { // deleted while its record was in flight
		o.Status, o.ErrorCode, o.ErrorMessage = "failed", CodeEntityNotFound, msgEntityNotFound
	}
	return o, nil
}

// topUp moves the batch's next records into its window of queued tasks, up to
// window records, and returns their rows. Callers hold the batch row's lock
// (they have just updated it), so concurrent top-ups of one batch are serialised.
//
// Shortest remaining first: while another batch in progress has fewer records
// left, this one keeps a single record queued. A 10-record batch uploaded
// beside a 5,000-record one then takes most of the rate and finishes in about
// the time it would alone, and the large batch never stops.
func topUp(ctx context.Context, tx pgx.Tx, batchID uuid.UUID, window int) ([]int, error) {
	rows, err := tx.Query(ctx, `
		WITH me AS (
			SELECT total_records - succeeded_records - failed_records - cancelled_records AS remaining
			FROM batches WHERE id = $1
		), share AS (
			SELECT CASE WHEN EXISTS (
				SELECT 1 FROM batches o, me
				WHERE o.status = 'in_progress' AND o.id <> $1
				  AND o.total_records - o.succeeded_records - o.failed_records - o.cancelled_records < me.remaining
			) THEN 1 ELSE $2 END AS size
		), inflight AS (
			SELECT count(*) AS n FROM batch_records
			WHERE batch_id = $1 AND status = 'pending' AND queued_at IS NOT NULL
		), next AS (
			SELECT row_number FROM batch_records
			WHERE batch_id = $1 AND status = 'pending' AND queued_at IS NULL
			ORDER BY row_number
			LIMIT GREATEST((SELECT size FROM share) - (SELECT n FROM inflight), 0)
		)
		UPDATE batch_records r SET queued_at = now()
		FROM next WHERE r.batch_id = $1 AND r.row_number = next.row_number
		RETURNING r.row_number`, batchID, window)
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
// false when the batch is already finished or cancelled.
func (s *Store) start(ctx context.Context, batchID uuid.UUID, window int) (next []int, started bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	tag, err := tx.Exec(ctx, `
		UPDATE batches SET status = 'in_progress', started_at = COALESCE(started_at, now()), updated_at = now()
		WHERE id = $1 AND status IN ('pending', 'in_progress')`, batchID)
	if err != nil {
		return nil, false, fmt.Errorf("start batch %s: %w", batchID, err)
	}
	if tag.RowsAffected() == 0 {
		return nil, false, nil
	}
	if next, err = topUp(ctx, tx, batchID, window); err != nil {
		return nil, false, err
	}
	// A batch left in progress with every record final (which finish
	// prevents) is completed here, so it cannot stay in progress for ever.
	_, err = tx.Exec(ctx, `
		UPDATE batches SET status = 'completed', completed_at = now(), updated_at = now()
		WHERE id = $1 AND status = 'in_progress'
		  AND NOT EXISTS (SELECT 1 FROM batch_records WHERE batch_id = $1 AND status = 'pending')`, batchID)
	if err != nil {
		return nil, false, fmt.Errorf("complete batch %s: %w", batchID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, false, fmt.Errorf("commit start of %s: %w", batchID, err)
	}
	return next, true, nil
}

// cancel stops a pending or in-progress batch of the business: records never
// sent to Sumsub become cancelled; records with a call made finish normally.
func (s *Store) cancel(ctx context.Context, business, batchID uuid.UUID) (Batch, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Batch{}, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	var status string
	err = tx.QueryRow(ctx, `SELECT status FROM batches WHERE id = $1 AND business_id = $2 FOR UPDATE`, batchID, business).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return Batch{}, ErrBatchNotFound
	}
	if err != nil {
		return Batch{}, fmt.Errorf("lock batch %s: %w", batchID, err)
	}
	switch status {
	case "completed", "failed":
		return Batch{}, ErrBatchFinished
	case "pending", "in_progress":
		tag, err := tx.Exec(ctx, `
			UPDATE batch_records SET status = 'cancelled', share_token = NULL, processed_at = now()
			WHERE batch_id = $1 AND status = 'pending' AND attempts = 0`, batchID)
		if err != nil {
			return Batch{}, fmt.Errorf("cancel records of %s: %w", batchID, err)
		}
		_, err = tx.Exec(ctx, `
			UPDATE batches SET status = 'cancelled', cancelled_records = cancelled_records + $2,
				completed_at = now(), updated_at = now()
			WHERE id = $1`, batchID, tag.RowsAffected())
		if err != nil {
			return Batch{}, fmt.Errorf("cancel batch %s: %w", batchID, err)
		}
	}
	b, err := scanBatch(tx.QueryRow(ctx, `SELECT `+batchColumns+` FROM batches WHERE id = $1`, batchID))
	if err != nil {
		return Batch{}, fmt.Errorf("read batch %s: %w", batchID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Batch{}, fmt.Errorf("commit cancel of %s: %w", batchID, err)
	}
	return b, nil
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
		SELECT r.batch_id, count(*) FROM batch_records r
		WHERE r.status = 'pending'
		  AND r.batch_id IN (SELECT id FROM batches WHERE status IN ('pending', 'in_progress'))
		GROUP BY r.batch_id`)
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
