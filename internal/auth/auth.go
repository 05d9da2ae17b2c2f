// Package auth owns businesses and their API keys (the tables businesses and
// api_keys): it creates keys (shown once, stored as a SHA-256), checks them,
// and carries the calling business in the context (WithBusiness,
// BusinessFrom), where the domain reads it.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/database"
)

// keyPrefix starts every key, so that leaked keys are easy to recognise and
// secret scanners can match them.
const keyPrefix = "kyc_"

// lookupLen is how many characters of a key are stored in clear to find its row.
const lookupLen = len(keyPrefix) + 8

// ErrNoKey and ErrBadKey are the two ways authentication fails; each API
// family answers them with its own body.
var (
	ErrNoKey  = errors.New("missing API key")
	ErrBadKey = errors.New("invalid API key")
)

// Store reads and writes businesses and API keys.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// EnsureBusiness returns the id of the business named name, creating it when missing.
func (s *Store) EnsureBusiness(ctx context.Context, name string) (uuid.UUID, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return uuid.Nil, errors.New("business name is empty")
	}
	var id uuid.UUID
	err := s.pool.QueryRow(ctx, `
		INSERT INTO businesses (id, name) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
		RETURNING id`, uuid.New(), name).Scan(&id)
	if err != nil {
		return uuid.Nil, fmt.Errorf("ensure business %q: %w", name, err)
	}
	return id, nil
}

// NewKey returns a fresh random API key: 32 random bytes, URL-safe base64.
func NewKey() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand.Read panics rather than return an error)
	return keyPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// AddKey stores key for the business. Only its hash and its first characters
// are kept: the key itself can never be shown again.
func (s *Store) AddKey(ctx context.Context, businessID uuid.UUID, key string) error {
	if !strings.HasPrefix(key, keyPrefix) || len(key) < lookupLen+16 {
		return fmt.Errorf("an API key starts with %q and has at least %d characters", keyPrefix, lookupLen+16)
	}
	sum := sha256.Sum256([]byte(key))
	_, err := s.pool.Exec(ctx, `
		INSERT INTO api_keys (id, business_id, prefix, key_hash) VALUES ($1, $2, $3, $4)
		ON CONFLICT (key_hash) DO NOTHING`, uuid.New(), businessID, key[:lookupLen], sum[:])
	if err != nil {
		return fmt.Errorf("store API key: %w", err)
	}
	return nil
}

// RevokeKey revokes the key whose first characters are prefix; it reports how many keys it revoked.
func (s *Store) RevokeKey(ctx context.Context, prefix string) (int64, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE api_keys SET revoked_at = now() WHERE prefix = $1 AND revoked_at IS NULL`, prefix)
	if err != nil {
		return 0, fmt.Errorf("revoke API key %s: %w", prefix, err)
	}
	return tag.RowsAffected(), nil
}

// Prefix returns the part of key that is stored in clear and names it to people.
func Prefix(key string) string {
	if len(key) < lookupLen {
		return key
	}
	return key[:lookupLen]
}

// Authenticate returns the business that owns key, or ErrBadKey. The row is
// found by the key's clear prefix and the hashes are compared in constant time,
// so the time taken says nothing about how much of a guess was right.
func (s *Store) Authenticate(ctx context.Context, key string) (uuid.UUID, error) {
	if len(key) < lookupLen || len(key) > 512 {
		return uuid.Nil, ErrBadKey
	}
	sum := sha256.Sum256([]byte(key))
	rows, err := s.pool.Query(ctx, `
		SELECT business_id, key_hash FROM api_keys
		WHERE prefix = $1 AND revoked_at IS NULL`, key[:lookupLen])
	if err != nil {
		return uuid.Nil, fmt.Errorf("look up API key: %w", err)
	}
	type candidate struct {
		business uuid.UUID
		hash     []byte
	}
	candidates, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (candidate, error) {
		var c candidate
		return c, r.Scan(&c.business, &c.hash)
	})
	if err != nil {
		return uuid.Nil, fmt.Errorf("look up API key: %w", err)
	}
	for _, c := range candidates {
		if subtle.ConstantTimeCompare(c.hash, sum[:]) == 1 {
			return c.business, nil
		}
	}
	return uuid.Nil, ErrBadKey
}

// ErrNoBusiness says no business has the name given.
var ErrNoBusiness = errors.New("no such business")

// MaxWeight is the largest weight a business may have.
const MaxWeight = 100

// SetWeight sets the weight of the business named name: its share of the
// Sumsub rate against the other businesses with work (1 to MaxWeight).
func (s *Store) SetWeight(ctx context.Context, name string, weight int) (uuid.UUID, error) {
	if weight < 1 || weight > MaxWeight {
		return uuid.Nil, fmt.Errorf("weight must be from 1 to %d, got %d", MaxWeight, weight)
	}
	var id uuid.UUID
	err := s.pool.QueryRow(ctx, `UPDATE businesses SET weight = $2 WHERE name = $1 RETURNING id`, strings.TrimSpace(name), weight).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, fmt.Errorf("%w: %q", ErrNoBusiness, name)
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("set weight of %q: %w", name, err)
	}
	return id, nil
}

// Weights returns the weights of the businesses, for the scheduler and the
// completion estimates.
func Weights(ctx context.Context, db database.DB, businesses []uuid.UUID) (map[uuid.UUID]int, error) {
	rows, err := db.Query(ctx, `SELECT id, weight FROM businesses WHERE id = ANY($1)`, businesses)
	if err != nil {
		return nil, fmt.Errorf("read weights: %w", err)
	}
	weights := make(map[uuid.UUID]int, len(businesses))
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var w int
		if err := rows.Scan(&id, &w); err != nil {
			return nil, fmt.Errorf("read weights: %w", err)
		}
		weights[id] = w
	}
	return weights, rows.Err()
}
