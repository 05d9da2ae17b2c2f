// Package webhook sends kycbatch's own events (a batch finished, a report
// built) to the HTTPS endpoints a business registers, signed as Standard
// Webhooks prescribes, at least once, with retries over a day. It owns the
// endpoint API, the event and delivery tables, and the delivery task.
package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/kycbatch/kycbatch/internal/taskqueue"
	"github.com/kycbatch/kycbatch/internal/web"
)

// Event types an endpoint may subscribe to.
const (
	EventBatchCompleted = "batch.completed"
	EventBatchFailed    = "batch.failed"
	EventBatchCancelled = "batch.cancelled"
	EventReportReady    = "report.ready"
	EventReportFailed   = "report.failed"
)

// eventTypes are the valid subscriptions, in the order the API lists them.
var eventTypes = []string{EventBatchCompleted, EventBatchFailed, EventBatchCancelled, EventReportReady, EventReportFailed}

// event is the JSON body POSTed to an endpoint.
type event struct {
	Type      string   `json:"type"`
	ID        string   `json:"id"`
	Timestamp web.Time `json:"timestamp"`
	Data      any      `json:"data"`
}

const idLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newEventID returns msg_ and 24 random letters and digits.
func newEventID() string {
	b := make([]byte, 24)
	rand.Read(b) // never fails
	for i := range b {
		b[i] = idLetters[int(b[i])%len(idLetters)]
	}
	return "msg_" + string(b)
}

// Notifier turns a state change into an event for every endpoint of the
// business subscribed to it: stored in PostgreSQL, then one delivery task
// per endpoint. ingest and reports see it through their own one-method
// interfaces.
type Notifier struct {
	store   *Store
	queue   taskqueue.Enqueuer
	logger  *slog.Logger
	sources map[string]Source
}

// Source rebuilds the business and data of an event about subject (a batch
// or report id), for Recover.
type Source func(ctx context.Context, subject string) (business uuid.UUID, data any, err error)

// WithSources tells Recover where the data of each event type comes from; it returns n.
func (n *Notifier) WithSources(sources map[string]Source) *Notifier {
	n.sources = sources
	return n
}

// Recover stores and sends the events a process failed to store: each is
// raised after its batch's or report's change commits, so a process dying
// in between would lose it. The reconciler calls it; an event exists at most
// once per type and subject, so a late Notify and Recover never both send.
func (n *Notifier) Recover(ctx context.Context) error {
	list, err := n.store.missed(ctx, 1000)
	if err != nil {
		return err
	}
	for _, m := range list {
		source, ok := n.sources[m.Type]
		if !ok {
			continue
		}
		business, data, err := source(ctx, m.Subject)
		if err != nil {
			return fmt.Errorf("recover %s event of %s: %w", m.Type, m.Subject, err)
		}
		n.logger.WarnContext(ctx, "webhook event recovered", "event_type", m.Type, "subject", m.Subject)
		n.Notify(ctx, business, m.Type, m.Subject, data)
	}
	return nil
}

// NewNotifier returns a Notifier.
func NewNotifier(store *Store, queue taskqueue.Enqueuer, logger *slog.Logger) *Notifier {
	return &Notifier{store: store, queue: queue, logger: logger}
}

// Notify records an event of type eventType carrying data for the
// business's subscribed endpoints and enqueues their deliveries. It never
// fails its caller, whose state change is already committed: a failure to
// store is logged; a failure to enqueue is left to the reconciler.
func (n *Notifier) Notify(ctx context.Context, business uuid.UUID, eventType, subject string, data any) {
	ctx = context.WithoutCancel(ctx)
	ev := event{Type: eventType, ID: newEventID(), Timestamp: web.Time(time.Now()), Data: data}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		n.logger.ErrorContext(ctx, "encode webhook event", "event_type", eventType, "error", err)
		return
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	ids, err := n.store.createEvent(ctx, business, ev.ID, eventType, subject, body)
	if err != nil {
		n.logger.ErrorContext(ctx, "store webhook event; it is lost", "event_type", eventType, "error", err)
		return
	}
	for _, id := range ids {
		if _, err := n.queue.EnqueueContext(ctx, NewDeliverTask(id)); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			n.logger.WarnContext(ctx, "enqueue webhook delivery; the reconciler will retry", "delivery_id", id, "error", err)
		}
	}
	if len(ids) > 0 {
		n.logger.InfoContext(ctx, "webhook event", "event_type", eventType, "event_id", ev.ID, "endpoints", len(ids))
	}
}
