package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
)

// Renderer renders the body POSTed for an event: its type, id, time and the
// data of its batch or report as the API answers them. contract.Events is
// one; it returns an error wrapping ErrSubjectGone when the subject no
// longer exists.
type Renderer interface {
	Body(ctx context.Context, ev event.Event) ([]byte, error)
}

// ErrSubjectGone says an event's batch or report was deleted before the
// event was dispatched: there is nothing left to tell.
var ErrSubjectGone = errors.New("the event's subject is gone")

// Dispatcher hands the outbox's events on: for each, one delivery per
// endpoint of the business subscribed to its type when it happened, all
// sending one body rendered once.
type Dispatcher struct {
	pool      *pgxpool.Pool
	render    Renderer
	queue     taskqueue.Enqueuer
	inspector taskqueue.Inspector
	logger    *slog.Logger
}

// NewDispatcher returns a Dispatcher.
func NewDispatcher(pool *pgxpool.Pool, render Renderer, queue taskqueue.Enqueuer, inspector taskqueue.Inspector, logger *slog.Logger) *Dispatcher {
	return &Dispatcher{pool: pool, render: render, queue: queue, inspector: inspector, logger: logger}
}

// HandleDispatch dispatches the event of an event.TypeDispatch task.
func (d *Dispatcher) HandleDispatch(ctx context.Context, t *asynq.Task) error {
	var k event.Key
	if err := json.Unmarshal(t.Payload(), &k); err != nil {
		return fmt.Errorf("payload: %v: %w", err, asynq.SkipRetry)
	}
	return d.dispatch(ctx, k)
}

// dispatch creates the deliveries of event k and marks it dispatched, in one
// transaction, then enqueues the deliveries. An event dispatched already, or
// being dispatched by another worker, is left alone.
func (d *Dispatcher) dispatch(ctx context.Context, k event.Key) error {
	ctx = logging.With(ctx, slog.String("event_type", string(k.Type)), slog.String("subject", k.Subject))
	var ids []uuid.UUID
	var ev event.Event
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		var err error
		ev, err = event.ClaimUndispatched(ctx, tx, k)
		if errors.Is(err, event.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			SELECT id FROM webhook_endpoints
			WHERE business_id = $1 AND created_at <= $3 AND (cardinality(events) = 0 OR $2 = ANY (events))`,
			ev.BusinessID, string(ev.Type), ev.CreatedAt)
		if err == nil {
			ids, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		}
		if err != nil {
			return fmt.Errorf("find the endpoints of %s: %w", ev.ID, err)
		}
		var body []byte
		if len(ids) > 0 {
			body, err = d.render.Body(ctx, ev)
			if errors.Is(err, ErrSubjectGone) {
				d.logger.WarnContext(ctx, "event dropped: its subject is gone", "event_id", ev.ID)
				ids, body = nil, nil
			} else if err != nil {
				return fmt.Errorf("render event %s: %w", ev.ID, err)
			}
		}
		if len(ids) > 0 {
			rows, err := tx.Query(ctx, `
				INSERT INTO webhook_deliveries (id, event_id, event_type, endpoint_id)
				SELECT gen_random_uuid(), $1, $2, endpoint FROM unnest($3::uuid[]) AS endpoint
				RETURNING id`, ev.ID, string(ev.Type), ids)
			if err == nil {
				ids, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
			}
			if err != nil {
				return fmt.Errorf("store deliveries of %s: %w", ev.ID, err)
			}
		}
		return event.MarkDispatched(ctx, tx, ev.ID, body)
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := d.queue.EnqueueContext(ctx, NewDeliverTask(ctx, id)); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			d.logger.WarnContext(ctx, "enqueue webhook delivery; the reconciler will retry", "delivery_id", id, "error", err)
		}
	}
	if len(ids) > 0 {
		d.logger.InfoContext(ctx, "webhook event", "event_id", ev.ID, "endpoints", len(ids))
	}
	return nil
}

// undispatchedAfter is how long an event may wait in the outbox before the
// reconciler dispatches it itself (its task was lost with Redis).
const undispatchedAfter = 30 * time.Second

// Reconcile dispatches the events whose dispatch task Redis lost.
func (d *Dispatcher) Reconcile(ctx context.Context) error {
	keys, err := event.Undispatched(ctx, d.pool, undispatchedAfter, 1000)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		d.logger.WarnContext(ctx, "webhook event dispatched by the reconciler", "event_type", k.Type, "subject", k.Subject)
		errs = append(errs, d.dispatch(ctx, k))
	}
	return errors.Join(errs...)
}
