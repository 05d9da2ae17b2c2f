// Package reports builds usage reports of batches: a CSV of every record,
// streamed from PostgreSQL into S3, with counts, behind a presigned link
// signed afresh at every download. It serves the bulk usage report API.
package reports

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// idPrefix starts every report id, as the report API names them.
const idPrefix = "bulk_stamper_order_usage_report_"

const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID returns a report id: the prefix and 20 random letters.
func newID() string {
	b := make([]byte, 20)
	rand.Read(b) // never fails
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)] // 256 % 52 = 48: a bias too small to matter for an id
	}
	return idPrefix + string(b)
}

// Stats count a batch's records: pending (not final), available (succeeded)
// and failed (failed or cancelled: no applicant came of them).
type Stats struct {
	Pending   int `json:"pending"`
	Available int `json:"available"`
	Failed    int `json:"failed"`
}

// Report is a stored report.
type Report struct {
	ID            string
	BusinessID    uuid.UUID
	BatchID       uuid.UUID
	Status        string // pending, processing, success, failed
	Stats         *Stats // as of the build, once built
	ObjectKey     string
	FailureReason string
}

// Store reads and writes reports.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// errBatchNotFound and errReportNotFound are translated by the handlers.
var (
	errBatchNotFound  = errors.New("batch not found")
	errReportNotFound = errors.New("report not found")
)

// create stores a pending report of the business's batch.
func (s *Store) create(ctx context.Context, business, batchID uuid.UUID) (Report, error) {
	r := Report{ID: newID(), BusinessID: business, BatchID: batchID, Status: "pending"}
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO reports (id, business_id, batch_id)
		SELECT $1, $2, id FROM batches WHERE id = $3 AND business_id = $2`, r.ID, business, batchID)
	if err != nil {
		return Report{}, fmt.Errorf("create report of %s: %w", batchID, err)
	}
	if tag.RowsAffected() == 0 {
		return Report{}, errBatchNotFound
	}
	return r, nil
}

const reportColumns = `id, business_id, batch_id, status, stats_pending, stats_available, stats_failed,
	coalesce(object_key, ''), coalesce(failure_reason, '')`

func scanReport(row pgx.Row) (Report, error) {
	var r Report
	var pending, available, failed *int
	err := row.Scan(&r.ID, &r.BusinessID, &r.BatchID, &r.Status, &pending, &available, &failed, &r.ObjectKey, &r.FailureReason)
	if pending != nil && available != nil && failed != nil {
		r.Stats = &Stats{Pending: *pending, Available: *available, Failed: *failed}
	}
	return r, err
}

// get returns the business's report id.
func (s *Store) get(ctx context.Context, business uuid.UUID, id string) (Report, error) {
	r, err := scanReport(s.pool.QueryRow(ctx, `SELECT `+reportColumns+` FROM reports WHERE id = $1 AND business_id = $2`, id, business))
	if errors.Is(err, pgx.ErrNoRows) {
		return Report{}, errReportNotFound
	}
	if err != nil {
		return Report{}, fmt.Errorf("get report %s: %w", id, err)
	}
	return r, nil
}

// byID returns a report whoever owns it, for the build task.
func (s *Store) byID(ctx context.Context, id string) (Report, error) {
	r, err := scanReport(s.pool.QueryRow(ctx, `SELECT `+reportColumns+` FROM reports WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Report{}, errReportNotFound
	}
	if err != nil {
		return Report{}, fmt.Errorf("get report %s: %w", id, err)
	}
	return r, nil
}

// currentStats counts the batch's records now, from its counters.
func (s *Store) currentStats(ctx context.Context, batchID uuid.UUID) (Stats, error) {
	var st Stats
	err := s.pool.QueryRow(ctx, `
		SELECT total_records - succeeded_records - failed_records - cancelled_records,
		       succeeded_records, failed_records + cancelled_records
		FROM batch_progress WHERE id = $1`, batchID).Scan(&st.Pending, &st.Available, &st.Failed)
	if err != nil {
		return Stats{}, fmt.Errorf("count records of %s: %w", batchID, err)
	}
	return st, nil
}

// markProcessing records that a build started; ok is false when the report is already finished.
func (s *Store) markProcessing(ctx context.Context, id string) (ok bool, err error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE reports SET status = 'processing', updated_at = now()
		WHERE id = $1 AND status IN ('pending', 'processing')`, id)
	if err != nil {
		return false, fmt.Errorf("start report %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// markBuilt stores the built report's stats and object.
func (s *Store) markBuilt(ctx context.Context, id, key string, st Stats) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE reports SET status = 'success', stats_pending = $2, stats_available = $3, stats_failed = $4,
			object_key = $5, completed_at = now(), updated_at = now()
		WHERE id = $1`, id, st.Pending, st.Available, st.Failed, key)
	if err != nil {
		return fmt.Errorf("store report %s: %w", id, err)
	}
	return nil
}

// markFailed records that the build failed for good.
func (s *Store) markFailed(ctx context.Context, id, reason string) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE reports SET status = 'failed', failure_reason = $2, completed_at = now(), updated_at = now()
		WHERE id = $1 AND status IN ('pending', 'processing')`, id, reason)
	if err != nil {
		return fmt.Errorf("fail report %s: %w", id, err)
	}
	return nil
}

// stuck returns reports unfinished for longer than age, for the reconciler.
func (s *Store) stuck(ctx context.Context, age time.Duration, limit int) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id FROM reports WHERE status IN ('pending', 'processing') AND updated_at < now() - make_interval(secs => $1)
		ORDER BY created_at LIMIT $2`, age.Seconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("list unfinished reports: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list unfinished reports: %w", err)
	}
	return ids, nil
}

// record is one line of a report.
type record struct {
	Row          int
	ExternalID   uuid.UUID
	Status       string
	ApplicantID  *string
	ReviewStatus *string
	ErrorCode    *string
	ErrorMessage *string
	Attempts     int
	ProcessedAt  *time.Time
}

// eachRecord calls fn for every record of the batch in row order, streaming
// them from one query so that memory does not grow with the batch.
func (s *Store) eachRecord(ctx context.Context, batchID uuid.UUID, fn func(record) error) error {
	rows, err := s.pool.Query(ctx, `
		SELECT row_number, external_id, status, applicant_id, review_status, error_code, error_message, attempts, processed_at
		FROM batch_records WHERE batch_id = $1 ORDER BY row_number`, batchID)
	if err != nil {
		return fmt.Errorf("read records of %s: %w", batchID, err)
	}
	defer rows.Close()
	var r record
	for rows.Next() {
		if err := rows.Scan(&r.Row, &r.ExternalID, &r.Status, &r.ApplicantID, &r.ReviewStatus, &r.ErrorCode,
			&r.ErrorMessage, &r.Attempts, &r.ProcessedAt); err != nil {
			return fmt.Errorf("read records of %s: %w", batchID, err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read records of %s: %w", batchID, err)
	}
	return nil
}
