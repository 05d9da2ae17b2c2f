package webhook

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/web"
)

// Store reads and writes webhook endpoints, events, deliveries and attempts.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// errEndpointNotFound is translated by the handlers into ErrEndpointNotFound.
var errEndpointNotFound = errors.New("webhook endpoint not found")

// endpoint is a stored endpoint. Its secret is read only to sign deliveries.
type endpoint struct {
	ID         uuid.UUID
	BusinessID uuid.UUID
	URL        string
	Events     []string
	Secret     string
	CreatedAt  time.Time
}

// createEndpoint stores e; its CreatedAt is set from the database.
func (s *Store) createEndpoint(ctx context.Context, e *endpoint) error {
	err := s.pool.QueryRow(ctx, `
		INSERT INTO webhook_endpoints (id, business_id, url, events, secret) VALUES ($1, $2, $3, $4, $5)
		RETURNING created_at`, e.ID, e.BusinessID, e.URL, e.Events, e.Secret).Scan(&e.CreatedAt)
	if err != nil {
		return fmt.Errorf("create webhook endpoint: %w", err)
	}
	return nil
}

// listEndpoints returns the business's endpoints, oldest first, without their secrets.
func (s *Store) listEndpoints(ctx context.Context, business uuid.UUID) ([]endpoint, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, business_id, url, events, created_at FROM webhook_endpoints
		WHERE business_id = $1 ORDER BY created_at, id`, business)
	if err != nil {
		return nil, fmt.Errorf("list webhook endpoints: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (endpoint, error) {
		var e endpoint
		err := r.Scan(&e.ID, &e.BusinessID, &e.URL, &e.Events, &e.CreatedAt)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list webhook endpoints: %w", err)
	}
	return list, nil
}

// deleteEndpoint deletes the business's endpoint with its deliveries.
func (s *Store) deleteEndpoint(ctx context.Context, business, id uuid.UUID) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1 AND business_id = $2`, id, business)
	if err != nil {
		return fmt.Errorf("delete webhook endpoint %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return errEndpointNotFound
	}
	return nil
}

// attemptView is one POST as GET /webhook-endpoints/{id}/deliveries shows it.
type attemptView struct {
	ID           uuid.UUID `json:"id"`
	EventID      string    `json:"eventId"`
	EventType    string    `json:"eventType"`
	Attempt      int       `json:"attempt"`
	Status       string    `json:"status"`
	ResponseCode *int      `json:"responseCode"`
	LatencyMs    int       `json:"latencyMs"`
	Error        *string   `json:"error"`
	CreatedAt    web.Time  `json:"createdAt"`
}

// attempts returns the latest attempts of the business's endpoint, newest first.
func (s *Store) attempts(ctx context.Context, business, endpointID uuid.UUID, limit int) ([]attemptView, error) {
	var exists bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1 AND business_id = $2)`,
		endpointID, business).Scan(&exists)
	if err != nil {
		return nil, fmt.Errorf("look up webhook endpoint %s: %w", endpointID, err)
	}
	if !exists {
		return nil, errEndpointNotFound
	}
	rows, err := s.pool.Query(ctx, `
		SELECT a.id, d.event_id, ev.type, a.attempt, a.status, a.response_code, a.latency_ms, a.error, a.created_at
		FROM webhook_attempts a
		JOIN webhook_deliveries d ON d.id = a.delivery_id
		JOIN webhook_events ev ON ev.id = d.event_id
		WHERE a.endpoint_id = $1
		ORDER BY a.created_at DESC, a.attempt DESC LIMIT $2`, endpointID, limit)
	if err != nil {
		return nil, fmt.Errorf("list deliveries of %s: %w", endpointID, err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (attemptView, error) {
		var a attemptView
		var created time.Time
		err := r.Scan(&a.ID, &a.EventID, &a.EventType, &a.Attempt, &a.Status, &a.ResponseCode, &a.LatencyMs, &a.Error, &created)
		a.CreatedAt = web.Time(created)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("list deliveries of %s: %w", endpointID, err)
	}
	return list, nil
}

// createEvent stores an event and one pending delivery for each endpoint of
// the business subscribed to its type, in one statement, and returns the
// deliveries' ids. No subscribed endpoint: nothing is stored.
func (s *Store) createEvent(ctx context.Context, business uuid.UUID, id, eventType, subject string, body []byte) ([]uuid.UUID, error) {
	rows, err := s.pool.Query(ctx, `
		WITH ep AS (
			SELECT id FROM webhook_endpoints
			WHERE business_id = $1 AND (cardinality(events) = 0 OR $2 = ANY (events))
		), ev AS (
			INSERT INTO webhook_events (id, business_id, type, subject, body)
			SELECT $3, $1, $2, $5, $4 WHERE EXISTS (SELECT 1 FROM ep)
			ON CONFLICT (type, subject) DO NOTHING
			RETURNING id
		)
		INSERT INTO webhook_deliveries (id, event_id, endpoint_id)
		SELECT gen_random_uuid(), ev.id, ep.id FROM ev CROSS JOIN ep
		RETURNING id`, business, eventType, id, body, subject)
	if err != nil {
		return nil, fmt.Errorf("store event %s: %w", eventType, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("store event %s: %w", eventType, err)
	}
	return ids, nil
}

// missed is an event that should exist and does not.
type missed struct {
	Type, Subject string
}

// missed returns the events of the last day that were never stored: batches
// and reports finished more than a minute ago, of a business with an
// endpoint subscribed since before then, without their event (the process
// that finished them died before storing it).
func (s *Store) missed(ctx context.Context, limit int) ([]missed, error) {
	rows, err := s.pool.Query(ctx, `
		WITH finished AS (
			SELECT 'batch.' || status AS type, id::text AS subject, business_id, completed_at
			FROM batches WHERE status IN ('completed', 'failed', 'cancelled')
			  AND completed_at BETWEEN now() - interval '1 day' AND now() - interval '1 minute'
			UNION ALL
			SELECT CASE status WHEN 'success' THEN 'report.ready' ELSE 'report.failed' END, id, business_id, completed_at
			FROM reports WHERE status IN ('success', 'failed')
			  AND completed_at BETWEEN now() - interval '1 day' AND now() - interval '1 minute'
		)
		SELECT f.type, f.subject FROM finished f
		WHERE EXISTS (
			SELECT 1 FROM webhook_endpoints e
			WHERE e.business_id = f.business_id AND e.created_at < f.completed_at
			  AND (cardinality(e.events) = 0 OR f.type = ANY (e.events)))
		  AND NOT EXISTS (SELECT 1 FROM webhook_events ev WHERE ev.type = f.type AND ev.subject = f.subject)
		LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list missed webhook events: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[missed])
	if err != nil {
		return nil, fmt.Errorf("list missed webhook events: %w", err)
	}
	return list, nil
}

// delivery is what one attempt needs: the event, where to send it and how to sign it.
type delivery struct {
	ID         uuid.UUID
	EndpointID uuid.UUID
	EventID    string
	EventType  string
	Body       []byte
	URL        string
	Secret     string
	Status     string
	Attempts   int
}

// errNoDelivery says the delivery is gone (its endpoint was deleted).
var errNoDelivery = errors.New("webhook delivery not found")

// delivery loads delivery id with its event and endpoint.
func (s *Store) delivery(ctx context.Context, id uuid.UUID) (delivery, error) {
	var d delivery
	err := s.pool.QueryRow(ctx, `
		SELECT d.id, d.endpoint_id, ev.id, ev.type, ev.body, ep.url, ep.secret, d.status, d.attempts
		FROM webhook_deliveries d
		JOIN webhook_events ev ON ev.id = d.event_id
		JOIN webhook_endpoints ep ON ep.id = d.endpoint_id
		WHERE d.id = $1`, id).
		Scan(&d.ID, &d.EndpointID, &d.EventID, &d.EventType, &d.Body, &d.URL, &d.Secret, &d.Status, &d.Attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, errNoDelivery
	}
	if err != nil {
		return d, fmt.Errorf("load webhook delivery %s: %w", id, err)
	}
	return d, nil
}

// attemptResult is how one POST went.
type attemptResult struct {
	Status       string // delivered, failed or given_up
	ResponseCode int    // 0: no answer
	Latency      time.Duration
	Error        string
}

// recordAttempt stores an attempt and moves its delivery on, in one
// statement: delivered, given up, or pending until nextAt. It reports false
// when the delivery is no longer pending (another task got there first, or
// the endpoint was deleted): nothing is stored then.
func (s *Store) recordAttempt(ctx context.Context, d delivery, attempt int, r attemptResult, nextAt time.Time) (bool, error) {
	deliveryStatus := r.Status
	if deliveryStatus == "failed" {
		deliveryStatus = "pending"
	}
	var code *int
	if r.ResponseCode != 0 {
		code = &r.ResponseCode
	}
	var msg *string
	if r.Error != "" {
		msg = &r.Error
	}
	var n int
	err := s.pool.QueryRow(ctx, `
		WITH moved AS (
			UPDATE webhook_deliveries SET status = $3, attempts = $4, next_attempt_at = $5, updated_at = now()
			WHERE id = $1 AND status = 'pending' AND attempts = $4 - 1
			RETURNING id
		), logged AS (
			INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, attempt, status, response_code, latency_ms, error)
			SELECT gen_random_uuid(), moved.id, $2, $4, $6, $7, $8, $9 FROM moved
		)
		SELECT count(*) FROM moved`,
		d.ID, d.EndpointID, deliveryStatus, attempt, nextAt, r.Status, code, int(r.Latency.Milliseconds()), msg).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("record attempt %d of delivery %s: %w", attempt, d.ID, err)
	}
	return n == 1, nil
}

// due is a pending delivery and when its next attempt is due.
type due struct {
	ID     uuid.UUID
	NextAt time.Time
}

// pending returns deliveries neither delivered nor given up whose state has
// not changed for age, for the reconciler.
func (s *Store) pending(ctx context.Context, age time.Duration, limit int) ([]due, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, next_attempt_at FROM webhook_deliveries
		WHERE status = 'pending' AND updated_at < now() - make_interval(secs => $1)
		ORDER BY updated_at LIMIT $2`, age.Seconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("list pending webhook deliveries: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[due])
	if err != nil {
		return nil, fmt.Errorf("list pending webhook deliveries: %w", err)
	}
	return list, nil
}
