// Package entity owns the entities of businesses (the people and companies a
// business imports KYC for, each named by the business's own external UUID)
// and the Sumsub reviews that decide their KYC status. It owns the tables
// entities and sumsub_reviews.
package entity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/database"
)

// Errors of the entity operations.
var (
	ErrNotFound    = errors.New("entity not found")
	ErrDuplicate   = errors.New("entity with this externalId already exists")
	ErrInvalidType = errors.New("type must be INDIVIDUAL or BUSINESS")
	ErrBadCursor   = errors.New("cursor is not valid")
)

// Entity is an entity of a business.
type Entity struct {
	ID         uuid.UUID
	ExternalID uuid.UUID
	Type       string
	BusinessID uuid.UUID
	// KYCStatus is NOT_STARTED until a batch record imports the entity,
	// then PENDING, APPROVED or REJECTED.
	KYCStatus string
	// SumsubApplicantID and CardProcessorPublicToken are empty until set.
	SumsubApplicantID        string
	CardProcessorPublicToken string
	CreatedAt                time.Time
	UpdatedAt                time.Time
}

// Types an entity can have.
var validTypes = map[string]bool{"INDIVIDUAL": true, "BUSINESS": true}

// Store reads and writes the entities of the calling business (auth.BusinessFrom).
type Store struct {
	db database.DB
}

// NewStore returns a Store on db.
func NewStore(db database.DB) *Store {
	return &Store{db: db}
}

const columns = `id, external_id, type, business_id, kyc_status, coalesce(sumsub_applicant_id, ''),
	coalesce(card_processor_public_token, ''), created_at, updated_at`

func scan(row pgx.Row) (Entity, error) {
	var e Entity
	err := row.Scan(&e.ID, &e.ExternalID, &e.Type, &e.BusinessID, &e.KYCStatus, &e.SumsubApplicantID,
		&e.CardProcessorPublicToken, &e.CreatedAt, &e.UpdatedAt)
	return e, err
}

// Create stores a new entity of the calling business.
func (s *Store) Create(ctx context.Context, externalID uuid.UUID, typ string) (Entity, error) {
	if !validTypes[typ] {
		return Entity{}, ErrInvalidType
	}
	e, err := scan(s.db.QueryRow(ctx, `
		INSERT INTO entities (id, business_id, external_id, type) VALUES ($1, $2, $3, $4)
		RETURNING `+columns, uuid.New(), auth.BusinessFrom(ctx), externalID, typ))
	if database.IsUniqueViolation(err, "entities_business_id_external_id_key") {
		return Entity{}, ErrDuplicate
	}
	if err != nil {
		return Entity{}, fmt.Errorf("create entity: %w", err)
	}
	return e, nil
}

// Get returns the calling business's entity whose id or external id is ref;
// an id match wins over an external-id match.
func (s *Store) Get(ctx context.Context, ref uuid.UUID) (Entity, error) {
	e, err := scan(s.db.QueryRow(ctx, `
		SELECT `+columns+` FROM entities
		WHERE business_id = $1 AND (id = $2 OR external_id = $2)
		ORDER BY id = $2 DESC LIMIT 1`, auth.BusinessFrom(ctx), ref))
	if errors.Is(err, pgx.ErrNoRows) {
		return Entity{}, ErrNotFound
	}
	if err != nil {
		return Entity{}, fmt.Errorf("get entity %s: %w", ref, err)
	}
	return e, nil
}

// cursor marks where a page ends: the listing is ordered by (created_at, id), newest first.
type cursor struct {
	CreatedAt time.Time `json:"t"`
	ID        uuid.UUID `json:"i"`
}

// List returns up to limit entities of the calling business, newest first,
// after the opaque position after (empty for the first page), and the
// position of the next page (empty on the last).
func (s *Store) List(ctx context.Context, limit int, after string) (list []Entity, next string, err error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("list entities: limit %d, want at least 1", limit)
	}
	cur := cursor{CreatedAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), ID: uuid.Max}
	if after != "" {
		b, err := base64.RawURLEncoding.DecodeString(after)
		if err != nil || json.Unmarshal(b, &cur) != nil {
			return nil, "", ErrBadCursor
		}
	}
	rows, err := s.db.Query(ctx, `
		SELECT `+columns+` FROM entities
		WHERE business_id = $1 AND (created_at, id) < ($2, $3)
		ORDER BY created_at DESC, id DESC LIMIT $4`, auth.BusinessFrom(ctx), cur.CreatedAt, cur.ID, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list entities: %w", err)
	}
	list, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entity, error) { return scan(r) })
	if err != nil {
		return nil, "", fmt.Errorf("list entities: %w", err)
	}
	if len(list) > limit {
		list = list[:limit]
		last := list[limit-1]
		b, err := json.Marshal(cursor{CreatedAt: last.CreatedAt, ID: last.ID})
		if err != nil {
			return nil, "", err
		}
		next = base64.RawURLEncoding.EncodeToString(b)
	}
	return list, next, nil
}
