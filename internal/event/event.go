// Package event is the outbox of kycbatch's own events: a batch finished, a
// report built. It owns the table events. An event is recorded in the same
// transaction as the change it reports, so it exists exactly when the change
// does, whatever happens to the process afterwards; the webhook package
// delivers it from there to the business's endpoints.
package event

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
	"github.com/kycbatch/kycbatch/internal/tracing"
)

// Type names an event, as webhook endpoints subscribe to it.
type Type string

// The events of kycbatch: the one place their names are declared.
const (
	BatchCompleted Type = "batch.completed"
	BatchCancelled Type = "batch.cancelled"
	ReportReady    Type = "report.ready"
	ReportFailed   Type = "report.failed"
)

// Types are the event types, in the order the API lists them.
var Types = []Type{BatchCompleted, BatchCancelled, ReportReady, ReportFailed}

// Event is a recorded event. Subject is the batch or report it is about:
// there is at most one event of a type per subject.
type Event struct {
	ID         string
	BusinessID uuid.UUID
	Type       Type
	Subject    string
	CreatedAt  time.Time
}

const idLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newID returns msg_ and 24 random letters and digits: the webhook-id of
// every delivery of the event.
func newID() string {
	b := make([]byte, 24)
	rand.Read(b) // never fails
	for i := range b {
		b[i] = idLetters[int(b[i])%len(idLetters)]
	}
	return "msg_" + string(b)
}

// Record stores an event of type t about subject for the business, in db:
// the transaction of the change it reports. Recording an event that exists
// already (the same type and subject) is a no-op, so a change replayed after
// a crash raises its event once.
func Record(ctx context.Context, db database.DB, business uuid.UUID, t Type, subject string) error {
	_, err := db.Exec(ctx, `
		INSERT INTO events (id, business_id, type, subject) VALUES ($1, $2, $3, $4)
		ON CONFLICT (type, subject) DO NOTHING`, newID(), business, string(t), subject)
	if err != nil {
		return fmt.Errorf("record %s event of %s: %w", t, subject, err)
	}
	return nil
}

// ErrNotFound says an event does not exist, or is no longer waiting to be dispatched.
var ErrNotFound = errors.New("event not found")

// Key names an event: its type and subject.
type Key struct {
	Type    Type   `json:"type"`
	Subject string `json:"subject"`
}

// ClaimUndispatched locks and returns the event k if it waits to be
// dispatched, so that one transaction at a time dispatches it; the claim
// ends with the transaction db, which calls MarkDispatched before committing.
func ClaimUndispatched(ctx context.Context, db database.DB, k Key) (Event, error) {
	ev := Event{Type: k.Type, Subject: k.Subject}
	err := db.QueryRow(ctx, `
		SELECT id, business_id, created_at FROM events
		WHERE type = $1 AND subject = $2 AND dispatched_at IS NULL FOR UPDATE SKIP LOCKED`, string(k.Type), k.Subject).
		Scan(&ev.ID, &ev.BusinessID, &ev.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Event{}, ErrNotFound
	}
	if err != nil {
		return Event{}, fmt.Errorf("claim %s event of %s: %w", k.Type, k.Subject, err)
	}
	return ev, nil
}

// MarkDispatched records that event id was handed on, with the body sent to
// its endpoints (nil when no endpoint wanted it): every delivery sends these
// bytes, so a retry is byte for byte the first attempt.
func MarkDispatched(ctx context.Context, db database.DB, id string, body []byte) error {
	_, err := db.Exec(ctx, `UPDATE events SET dispatched_at = now(), body = $2 WHERE id = $1`, id, body)
	if err != nil {
		return fmt.Errorf("mark event %s dispatched: %w", id, err)
	}
	return nil
}

// Body returns the body dispatched with event id.
func Body(ctx context.Context, db database.DB, id string) ([]byte, error) {
	var body []byte
	err := db.QueryRow(ctx, `SELECT body FROM events WHERE id = $1 AND body IS NOT NULL`, id).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read body of event %s: %w", id, err)
	}
	return body, nil
}

// Undispatched returns the events recorded more than age ago and not
// dispatched yet (their dispatch task was lost with Redis), oldest first.
func Undispatched(ctx context.Context, db database.DB, age time.Duration, limit int) ([]Key, error) {
	rows, err := db.Query(ctx, `
		SELECT type, subject FROM events WHERE dispatched_at IS NULL AND created_at < now() - make_interval(secs => $1)
		ORDER BY created_at LIMIT $2`, age.Seconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("list undispatched events: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) {
		var k Key
		var t string
		err := r.Scan(&t, &k.Subject)
		k.Type = Type(t)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("list undispatched events: %w", err)
	}
	return keys, nil
}

// TypeDispatch hands one recorded event on to the webhook endpoints; its
// handler is the webhook package's. Its payload is the event's Key.
const TypeDispatch = "event:dispatch"

// Queue is where dispatch tasks wait.
const Queue = "events"

// NewDispatchTask returns the task that dispatches event k; its task ID is
// derived from k, so announcing an event twice enqueues it once. Its
// headers carry the trace of ctx.
func NewDispatchTask(ctx context.Context, k Key) *asynq.Task {
	payload, err := json.Marshal(k)
	if err != nil {
		panic(err) // a struct of two strings always marshals
	}
	return tracing.NewTask(ctx, TypeDispatch, payload,
		asynq.TaskID("event:"+string(k.Type)+":"+k.Subject),
		asynq.Queue(Queue), asynq.MaxRetry(10), asynq.Timeout(time.Minute), asynq.Retention(time.Hour))
}

// Outbox tells the dispatcher, after a commit, that an event waits. The
// event is safe in PostgreSQL already: Announce only spares it the
// reconciler's wait, so failing to announce is logged, not returned.
type Outbox struct {
	queue  taskqueue.Enqueuer
	logger *slog.Logger
}

// NewOutbox returns an Outbox that enqueues on queue.
func NewOutbox(queue taskqueue.Enqueuer, logger *slog.Logger) *Outbox {
	return &Outbox{queue: queue, logger: logger}
}

// Announce enqueues the dispatch of event k: call it after the transaction
// that recorded it commits.
func (o *Outbox) Announce(ctx context.Context, k Key) {
	_, err := o.queue.EnqueueContext(context.WithoutCancel(ctx), NewDispatchTask(ctx, k))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		o.logger.WarnContext(ctx, "announce event; the reconciler will dispatch it", "event_type", k.Type, "subject", k.Subject, "error", err)
	}
}
