package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/database"
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
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"batch_records"},
		[]string{"batch_id", "row_number", "external_id", "share_token", "applicant_level", "card_processor_public_token"},
		pgx.CopyFromSlice(len(records), func(i int) ([]any, error) {
			r := records[i]
			return []any{b.ID, r.Row, r.ExternalID, r.ShareToken, nullable(r.ApplicantLevel), nullable(r.CardProcessorPublicToken)}, nil
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
	created_at, updated_at, started_at, completed_at`

func scanBatch(row pgx.Row) (Batch, error) {
	var b Batch
	err := row.Scan(&b.ID, &b.BusinessID, &b.Provider, &b.Status, &b.Total, &b.Succeeded, &b.Failed,
		&b.CreatedAt, &b.UpdatedAt, &b.StartedAt, &b.CompletedAt)
	return b, err
}

// nullable stores an empty optional field as NULL.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
