// Package webhook sends kycbatch's own events (a batch finished, a report
// built) to the HTTPS endpoints a business registers, signed as Standard
// Webhooks prescribes, at least once, with retries over a day. It owns the
// tables webhook_endpoints, webhook_deliveries and webhook_attempts; the
// events come from the outbox (event), which it dispatches.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/event"
)

// Errors of the endpoint operations.
var (
	// ErrNotFound answers unknown endpoints and other businesses' endpoints alike.
	ErrNotFound = errors.New("webhook endpoint not found")
	// ErrInvalid is what every *InvalidError is.
	ErrInvalid = errors.New("invalid webhook endpoint")
)

// InvalidError is an endpoint the API refuses: Parameter names the field.
type InvalidError struct {
	Parameter string
	Message   string
}

func (e *InvalidError) Error() string { return e.Message }

// Detail is the field and the message a client is shown.
func (e *InvalidError) Detail() (parameter, message string) { return e.Parameter, e.Message }

// Is makes an InvalidError an ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// maxEndpoints bounds the endpoints of one business.
const maxEndpoints = 20

// deliveriesLimit is how many attempts the deliveries listing shows.
const deliveriesLimit = 100

// Endpoint is a registered endpoint; Secret is set only in Create's answer.
type Endpoint struct {
	ID        uuid.UUID
	URL       string
	Events    []event.Type // empty: every type
	Secret    string
	CreatedAt time.Time
}

// Attempt is one POST of an event to an endpoint.
type Attempt struct {
	ID           uuid.UUID
	EventID      string
	EventType    string
	Attempt      int
	Status       string // delivered, failed or given_up
	ResponseCode *int
	LatencyMs    int
	Error        *string
	CreatedAt    time.Time
}

// Endpoints manages the calling business's endpoints (auth.BusinessFrom).
type Endpoints struct {
	pool         *pgxpool.Pool
	allowPrivate bool
	logger       *slog.Logger
}

// NewEndpoints returns Endpoints; allowPrivate accepts URLs of loopback and
// private addresses (development and tests only).
func NewEndpoints(pool *pgxpool.Pool, allowPrivate bool, logger *slog.Logger) *Endpoints {
	return &Endpoints{pool: pool, allowPrivate: allowPrivate, logger: logger}
}

// Create registers an endpoint for the event types (none: all of them) and
// returns it with its signing secret, the only time the secret is shown.
func (s *Endpoints) Create(ctx context.Context, rawURL string, types []string) (Endpoint, error) {
	rawURL = strings.TrimSpace(rawURL)
	if err := checkURL(ctx, rawURL, s.allowPrivate); err != nil {
		return Endpoint{}, &InvalidError{Parameter: "url", Message: err.Error()}
	}
	events := []event.Type{}
	for _, name := range types {
		t := event.Type(name)
		if !slices.Contains(event.Types, t) {
			return Endpoint{}, &InvalidError{Parameter: "events", Message: "events must be among " + typeList() + " (none: all of them)"}
		}
		if !slices.Contains(events, t) {
			events = append(events, t)
		}
	}
	business := auth.BusinessFrom(ctx)
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM webhook_endpoints WHERE business_id = $1`, business).Scan(&n); err != nil {
		return Endpoint{}, fmt.Errorf("count webhook endpoints: %w", err)
	}
	if n >= maxEndpoints {
		return Endpoint{}, &InvalidError{Message: fmt.Sprintf("a business may register at most %d webhook endpoints", maxEndpoints)}
	}
	e := Endpoint{ID: uuid.New(), URL: rawURL, Events: events, Secret: newSecret()}
	err := s.pool.QueryRow(ctx, `
		INSERT INTO webhook_endpoints (id, business_id, url, events, secret) VALUES ($1, $2, $3, $4, $5)
		RETURNING created_at`, e.ID, business, e.URL, typeNames(events), e.Secret).Scan(&e.CreatedAt)
	if err != nil {
		return Endpoint{}, fmt.Errorf("create webhook endpoint: %w", err)
	}
	s.logger.InfoContext(ctx, "webhook endpoint created", "endpoint_id", e.ID, "events", events)
	return e, nil
}

func typeList() string {
	return strings.Join(typeNames(event.Types), ", ")
}

func typeNames(types []event.Type) []string {
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = string(t)
	}
	return names
}

// List returns the calling business's endpoints, oldest first, without their secrets.
func (s *Endpoints) List(ctx context.Context) ([]Endpoint, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, url, events, created_at FROM webhook_endpoints
		WHERE business_id = $1 ORDER BY created_at, id`, auth.BusinessFrom(ctx))
	if err != nil {
		return nil, fmt.Errorf("list webhook endpoints: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Endpoint, error) {
		var e Endpoint
		var names []string
		err := r.Scan(&e.ID, &e.URL, &names, &e.CreatedAt)
		e.Events = make([]event.Type, len(names))
		for i, n := range names {
			e.Events[i] = event.Type(n)
		}
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list webhook endpoints: %w", err)
	}
	return list, nil
}

// Delete deletes the calling business's endpoint with its deliveries.
func (s *Endpoints) Delete(ctx context.Context, id uuid.UUID) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1 AND business_id = $2`, id, auth.BusinessFrom(ctx))
	if err != nil {
		return fmt.Errorf("delete webhook endpoint %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	s.logger.InfoContext(ctx, "webhook endpoint deleted", "endpoint_id", id)
	return nil
}

// Attempts returns the latest attempts to the calling business's endpoint, newest first.
func (s *Endpoints) Attempts(ctx context.Context, endpointID uuid.UUID) ([]Attempt, error) {
	var exists bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1 AND business_id = $2)`,
		endpointID, auth.BusinessFrom(ctx)).Scan(&exists)
	if err != nil {
		return nil, fmt.Errorf("look up webhook endpoint %s: %w", endpointID, err)
	}
	if !exists {
		return nil, ErrNotFound
	}
	rows, err := s.pool.Query(ctx, `
		SELECT a.id, d.event_id, d.event_type, a.attempt, a.status, a.response_code, a.latency_ms, a.error, a.created_at
		FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
		WHERE a.endpoint_id = $1
		ORDER BY a.created_at DESC, a.attempt DESC LIMIT $2`, endpointID, deliveriesLimit)
	if err != nil {
		return nil, fmt.Errorf("list deliveries of %s: %w", endpointID, err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Attempt])
	if err != nil {
		return nil, fmt.Errorf("list deliveries of %s: %w", endpointID, err)
	}
	return list, nil
}
