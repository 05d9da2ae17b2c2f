// Package entity owns the entities of businesses: the people and companies a
// business imports KYC for, each named by the business's own external UUID.
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
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/apperr"
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/web"
)

// Errors of the entity endpoints, with the contract's codes.
var (
	ErrNotFound  = apperr.New(apperr.NotFound, "0702020100", "entity not found").WithParameter("entityId")
	ErrDuplicate = apperr.New(apperr.Conflict, "0702010300", "entity with this externalId already exists").WithParameter("externalId")
)

// invalid returns the contract's error for a bad field of an entity request.
func invalid(parameter, message string) *apperr.Error {
	return apperr.New(apperr.Invalid, "0702010200", message).WithParameter(parameter)
}

// Entity is an entity as the API shows it.
type Entity struct {
	ID                       uuid.UUID `json:"id"`
	ExternalID               uuid.UUID `json:"externalId"`
	Type                     string    `json:"type"`
	BusinessID               uuid.UUID `json:"businessId"`
	KYCStatus                string    `json:"kycStatus"`
	SumsubApplicantID        *string   `json:"sumsubApplicantId"`
	CardProcessorPublicToken *string   `json:"cardProcessorPublicToken"`
	CreatedAt                web.Time  `json:"createdAt"`
	UpdatedAt                web.Time  `json:"updatedAt"`
}

// Types an entity can have.
var validTypes = map[string]bool{"INDIVIDUAL": true, "BUSINESS": true}

// Store reads and writes entities.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

const columns = `id, external_id, type, business_id, kyc_status, sumsub_applicant_id,
	card_processor_public_token, created_at, updated_at`

func scan(row pgx.Row) (Entity, error) {
	var e Entity
	var created, updated time.Time
	err := row.Scan(&e.ID, &e.ExternalID, &e.Type, &e.BusinessID, &e.KYCStatus, &e.SumsubApplicantID,
		&e.CardProcessorPublicToken, &created, &updated)
	e.CreatedAt, e.UpdatedAt = web.Time(created), web.Time(updated)
	return e, err
}

// Create stores a new entity of the business.
func (s *Store) Create(ctx context.Context, business, externalID uuid.UUID, typ string) (Entity, error) {
	if !validTypes[typ] {
		return Entity{}, invalid("type", "type must be INDIVIDUAL or BUSINESS")
	}
	e, err := scan(s.pool.QueryRow(ctx, `
		INSERT INTO entities (id, business_id, external_id, type) VALUES ($1, $2, $3, $4)
		RETURNING `+columns, uuid.New(), business, externalID, typ))
	if database.IsUniqueViolation(err, "entities_business_id_external_id_key") {
		return Entity{}, ErrDuplicate
	}
	if err != nil {
		return Entity{}, fmt.Errorf("create entity: %w", err)
	}
	return e, nil
}

// Get returns the business's entity whose id or external id is ref; an id
// match wins over an external-id match.
func (s *Store) Get(ctx context.Context, business uuid.UUID, ref string) (Entity, error) {
	id, err := uuid.Parse(ref)
	if err != nil {
		return Entity{}, ErrNotFound
	}
	e, err := scan(s.pool.QueryRow(ctx, `
		SELECT `+columns+` FROM entities
		WHERE business_id = $1 AND (id = $2 OR external_id = $2)
		ORDER BY id = $2 DESC LIMIT 1`, business, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Entity{}, ErrNotFound
	}
	if err != nil {
		return Entity{}, fmt.Errorf("get entity %s: %w", id, err)
	}
	return e, nil
}

// Page is one page of a listing; NextCursor is nil on the last page.
type Page struct {
	Entities   []Entity `json:"entities"`
	NextCursor *string  `json:"nextCursor"`
}

// cursor marks where a page ends: the listing is ordered by (created_at, id), newest first.
type cursor struct {
	CreatedAt time.Time `json:"t"`
	ID        uuid.UUID `json:"i"`
}

// List returns up to limit entities of the business, newest first, after the
// position encoded in after (empty for the first page).
func (s *Store) List(ctx context.Context, business uuid.UUID, limit int, after string) (Page, error) {
	if limit < 1 || limit > 1000 {
		return Page{}, invalid("limit", "limit must be between 1 and 1000")
	}
	cur := cursor{CreatedAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), ID: uuid.Max}
	if after != "" {
		b, err := base64.RawURLEncoding.DecodeString(after)
		if err != nil || json.Unmarshal(b, &cur) != nil {
			return Page{}, invalid("cursor", "cursor is not valid")
		}
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+columns+` FROM entities
		WHERE business_id = $1 AND (created_at, id) < ($2, $3)
		ORDER BY created_at DESC, id DESC LIMIT $4`, business, cur.CreatedAt, cur.ID, limit+1)
	if err != nil {
		return Page{}, fmt.Errorf("list entities: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entity, error) { return scan(r) })
	if err != nil {
		return Page{}, fmt.Errorf("list entities: %w", err)
	}
	if list == nil {
		list = []Entity{}
	}
	page := Page{Entities: list}
	if len(list) > limit {
		page.Entities = list[:limit]
		last := page.Entities[limit-1]
		b, err := json.Marshal(cursor{CreatedAt: time.Time(last.CreatedAt), ID: last.ID})
		if err != nil {
			return Page{}, err
		}
		next := base64.RawURLEncoding.EncodeToString(b)
		page.NextCursor = &next
	}
	return page, nil
}
