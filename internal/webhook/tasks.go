package webhook

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/client"
	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/metrics"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
	"github.com/kycbatch/kycbatch/internal/tracing"
)

// TypeDeliver POSTs one event to one endpoint; QueueWebhooks is its queue.
const (
	TypeDeliver   = "webhook:deliver"
	QueueWebhooks = "webhooks"
)

// schedule is the wait before each retry with the default base of 5 s:
// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then what is left of 24 h, so that
// the last of the 8 attempts comes 24 h after the first.
var schedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour,
	24*time.Hour - (5*time.Second + 5*time.Minute + 30*time.Minute + 2*time.Hour + 5*time.Hour + 10*time.Hour),
}

// MaxAttempts is how many times an event is POSTed to an endpoint before its delivery is given up.
var MaxAttempts = len(schedule) + 1

// DefaultRetryBase is the first retry's wait; the schedule scales with it.
const DefaultRetryBase = 5 * time.Second

// retryWait is the wait after failed attempt n (from 1) when the first wait is base.
func retryWait(n int, base time.Duration) time.Duration {
	d := schedule[min(n, len(schedule))-1]
	return time.Duration(float64(d) * float64(base) / float64(DefaultRetryBase))
}

// DeliverPayload is the payload of TypeDeliver. It names the delivery only:
// the secret and the body stay in PostgreSQL, out of Redis and the dashboard.
type DeliverPayload struct {
	DeliveryID uuid.UUID `json:"deliveryId"`
}

// NewDeliverTask returns the task of one delivery (one event, one
// endpoint); its task ID is webhook:<delivery id>, so it is enqueued once.
// Attempts are counted in PostgreSQL; Asynq's retry budget is a backstop.
// Its headers carry the trace of ctx.
func NewDeliverTask(ctx context.Context, id uuid.UUID, opts ...asynq.Option) *asynq.Task {
	payload, err := json.Marshal(DeliverPayload{DeliveryID: id})
	if err != nil {
		panic(err) // a struct of a UUID always marshals
	}
	return tracing.NewTask(ctx, TypeDeliver, payload, append([]asynq.Option{
		asynq.TaskID(taskID(id)),
		asynq.Queue(QueueWebhooks),
		asynq.MaxRetry(MaxAttempts + 2),
		asynq.Timeout(deliveryTimeout + 20*time.Second),
		asynq.Retention(24 * time.Hour),
	}, opts...)...)
}

func taskID(id uuid.UUID) string { return "webhook:" + id.String() }

// Deliverer runs the delivery tasks and the reconciliation of deliveries.
type Deliverer struct {
	pool      *pgxpool.Pool
	client    *http.Client
	queue     taskqueue.Enqueuer
	inspector taskqueue.Inspector
	retryBase time.Duration
	logger    *slog.Logger
	metrics   *metrics.Metrics
}

// DelivererConfig is what a Deliverer is made of.
type DelivererConfig struct {
	Pool      *pgxpool.Pool
	Queue     taskqueue.Enqueuer
	Inspector taskqueue.Inspector
	// RetryBase is the first retry's wait (DefaultRetryBase when zero);
	// the schedule scales with it.
	RetryBase time.Duration
	// AllowPrivate lets it connect to loopback and private addresses
	// (tests and local development).
	AllowPrivate bool
	Logger       *slog.Logger
	Metrics      *metrics.Metrics
}

// NewDeliverer returns a Deliverer.
func NewDeliverer(c DelivererConfig) *Deliverer {
	metrics.Start(c.Metrics.WebhookAttempts, "delivered", "failed", "given_up")
	return &Deliverer{pool: c.Pool, client: newHTTPClient(c.AllowPrivate), queue: c.Queue, inspector: c.Inspector,
		retryBase: cmp.Or(c.RetryBase, DefaultRetryBase), logger: c.Logger, metrics: c.Metrics}
}

// maxErrorLength bounds the error kept with an attempt.
const maxErrorLength = 500

// HandleDeliver POSTs the delivery's event, signed, and records the
// attempt: delivered on 2xx; otherwise failed and retried by Asynq after the
// schedule's wait, or given up after MaxAttempts.
func (d *Deliverer) HandleDeliver(ctx context.Context, t *asynq.Task) error {
	var p DeliverPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("payload: %v: %w", err, asynq.SkipRetry)
	}
	ctx = logging.With(ctx, slog.String("delivery_id", p.DeliveryID.String()))
	dl, err := d.delivery(ctx, p.DeliveryID)
	if errors.Is(err, errNoDelivery) {
		return nil // the endpoint was deleted
	}
	if err != nil {
		return err
	}
	if dl.Status != "pending" {
		return nil // a task run twice
	}
	attempt := dl.Attempts + 1
	res := d.post(ctx, dl)
	if ctx.Err() != nil {
		// The worker is stopping (or the task timed out): not the
		// endpoint's failure, so no attempt is counted; Asynq runs it again.
		return ctx.Err()
	}
	next := time.Now()
	switch {
	case res.Status == "delivered":
	case attempt >= MaxAttempts:
		res.Status = "given_up"
	default:
		next = next.Add(retryWait(attempt, d.retryBase))
	}
	stored, err := d.recordAttempt(context.WithoutCancel(ctx), dl, attempt, res, next)
	if err != nil || !stored {
		return err
	}
	d.metrics.WebhookAttempts.WithLabelValues(res.Status).Inc()
	attrs := []any{"endpoint_id", dl.EndpointID, "event_id", dl.EventID, "event_type", dl.EventType, "attempt", attempt, "response_code", res.ResponseCode}
	switch res.Status {
	case "delivered":
		d.logger.InfoContext(ctx, "webhook delivered", attrs...)
		return nil
	case "given_up":
		d.logger.WarnContext(ctx, "webhook delivery given up", append(attrs, "error", res.Error)...)
		return fmt.Errorf("webhook delivery given up after %d attempts: %s: %w", attempt, res.Error, asynq.SkipRetry)
	}
	// The next attempt follows the schedule of the attempts counted in
	// PostgreSQL, not Asynq's own count.
	return taskqueue.RetryIn(time.Until(next), fmt.Errorf("webhook delivery failed: %s", res.Error))
}

// post sends the event once and says how it went.
func (d *Deliverer) post(ctx context.Context, dl delivery) attemptResult {
	now := time.Now()
	sig, err := client.SignWebhook(dl.Secret, dl.EventID, now, dl.Body)
	if err != nil {
		return attemptResult{Status: "failed", Error: "the endpoint's signing secret is not valid"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dl.URL, bytes.NewReader(dl.Body))
	if err != nil {
		return attemptResult{Status: "failed", Error: "invalid endpoint URL"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "kycbatch-webhooks/1")
	req.Header.Set("webhook-id", dl.EventID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	res, err := d.client.Do(req)
	latency := time.Since(now)
	if err != nil {
		// Without the URL, which http.Client's *url.Error quotes whole: the
		// business knows its endpoint, and the logs and traces that show
		// the error must not hold a secret its path or query may carry.
		if uerr := (*url.Error)(nil); errors.As(err, &uerr) {
			err = uerr.Err
		}
		return attemptResult{Status: "failed", Latency: latency, Error: truncate(err.Error(), maxErrorLength)}
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10)) //nolint:errcheck // only to reuse the connection
	res.Body.Close()
	r := attemptResult{Status: "delivered", ResponseCode: res.StatusCode, Latency: latency}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		r.Status, r.Error = "failed", fmt.Sprintf("endpoint answered HTTP %d", res.StatusCode)
	}
	return r
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// staleAfter is how long a pending delivery may go unchanged before the
// reconciler makes sure Redis still holds its task.
const staleAfter = time.Minute

// Reconcile re-enqueues the deliveries neither delivered nor given up whose
// tasks Redis lost, each for when its next attempt is due.
func (d *Deliverer) Reconcile(ctx context.Context) error {
	rows, err := d.pool.Query(ctx, `
		SELECT id, next_attempt_at FROM webhook_deliveries
		WHERE status = 'pending' AND updated_at < now() - make_interval(secs => $1)
		ORDER BY updated_at LIMIT 1000`, staleAfter.Seconds())
	if err != nil {
		return fmt.Errorf("list pending webhook deliveries: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[due])
	if err != nil {
		return fmt.Errorf("list pending webhook deliveries: %w", err)
	}
	for _, p := range list {
		task := NewDeliverTask(ctx, p.ID, asynq.ProcessAt(p.NextAt))
		if err := taskqueue.EnqueueOnce(ctx, d.queue, d.inspector, task, QueueWebhooks, taskID(p.ID)); err != nil {
			return fmt.Errorf("re-enqueue webhook delivery %s: %w", p.ID, err)
		}
	}
	return nil
}

// due is a pending delivery and when its next attempt is due.
type due struct {
	ID     uuid.UUID
	NextAt time.Time
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

// delivery loads delivery id with its endpoint and its event's body.
func (d *Deliverer) delivery(ctx context.Context, id uuid.UUID) (delivery, error) {
	var dl delivery
	err := d.pool.QueryRow(ctx, `
		SELECT d.id, d.endpoint_id, d.event_id, d.event_type, ep.url, ep.secret, d.status, d.attempts
		FROM webhook_deliveries d JOIN webhook_endpoints ep ON ep.id = d.endpoint_id
		WHERE d.id = $1`, id).
		Scan(&dl.ID, &dl.EndpointID, &dl.EventID, &dl.EventType, &dl.URL, &dl.Secret, &dl.Status, &dl.Attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return dl, errNoDelivery
	}
	if err != nil {
		return dl, fmt.Errorf("load webhook delivery %s: %w", id, err)
	}
	if dl.Body, err = event.Body(ctx, d.pool, dl.EventID); err != nil {
		return dl, fmt.Errorf("load webhook delivery %s: %w", id, err)
	}
	return dl, nil
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
func (d *Deliverer) recordAttempt(ctx context.Context, dl delivery, attempt int, r attemptResult, nextAt time.Time) (bool, error) {
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
	err := d.pool.QueryRow(ctx, `
		WITH moved AS (
			UPDATE webhook_deliveries SET status = $3, attempts = $4, next_attempt_at = $5, updated_at = now()
			WHERE id = $1 AND status = 'pending' AND attempts = $4 - 1
			RETURNING id
		), logged AS (
			INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, attempt, status, response_code, latency_ms, error)
			SELECT gen_random_uuid(), moved.id, $2, $4, $6, $7, $8, $9 FROM moved
		)
		SELECT count(*) FROM moved`,
		dl.ID, dl.EndpointID, deliveryStatus, attempt, nextAt, r.Status, code, int(r.Latency.Milliseconds()), msg).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("record attempt %d of delivery %s: %w", attempt, dl.ID, err)
	}
	return n == 1, nil
}
