package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/metrics"
	"github.com/kycbatch/kycbatch/internal/ratelimit"
	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
)

// Importer imports an applicant from a share token; *sumsub.Client is one.
// The processor needs nothing else of Sumsub.
type Importer interface {
	ReuseApplicant(ctx context.Context, shareToken, levelName string) (sumsub.Applicant, error)
}

// Limiter hands out permits for Sumsub calls; *ratelimit.Limiter is one,
// shared by every worker process.
type Limiter interface {
	Wait(ctx context.Context, maxWait time.Duration) error
}

// ProcessorConfig tunes the pipeline.
type ProcessorConfig struct {
	Window       int           // records of one batch queued at once
	DefaultLevel string        // level of records that name none; empty: Sumsub's default
	MaxWait      time.Duration // longest wait for a rate-limit permit inside a task
	// AttemptLease is how long an attempt may be in flight: its permit wait,
	// the Sumsub call and a margin. A second task for the record (Redis lost
	// the first one's state and the reconciler enqueued it again) waits until
	// the first attempt is answered or its lease is over, so that two calls
	// for one token never race and a used-token refusal never overwrites the
	// first call's import.
	AttemptLease time.Duration
}

// Processor runs the tasks of the batch pipeline: dispatch, record import
// and reconciliation.
type Processor struct {
	records   records
	files     FileStore
	sumsub    Importer
	limiter   Limiter
	queue     taskqueue.Enqueuer
	inspector taskqueue.Inspector
	outbox    *event.Outbox
	cfg       ProcessorConfig
	logger    *slog.Logger
	metrics   *metrics.Metrics
}

// NewProcessor returns a Processor; files holds the raw uploads the reconciler sweeps.
func NewProcessor(pool *pgxpool.Pool, files FileStore, importer Importer, limiter Limiter, queue taskqueue.Enqueuer, inspector taskqueue.Inspector, outbox *event.Outbox, cfg ProcessorConfig, logger *slog.Logger, m *metrics.Metrics) *Processor {
	return &Processor{records: records{pool: pool}, files: files, sumsub: importer, limiter: limiter, queue: queue, inspector: inspector,
		outbox: outbox, cfg: cfg, logger: logger, metrics: m}
}

// HandleDispatch starts a batch: in progress, first window queued.
func (p *Processor) HandleDispatch(ctx context.Context, t *asynq.Task) error {
	var payload DispatchBatchPayload
	if err := json.Unmarshal(t.Payload(), &payload); err != nil {
		return fmt.Errorf("payload: %v: %w", err, asynq.SkipRetry)
	}
	ctx = logging.With(ctx, slog.String("batch_id", payload.BatchID.String()))
	next, started, completed, err := p.records.start(ctx, payload.BatchID, p.cfg.Window)
	if err != nil {
		return err
	}
	if started {
		p.logger.InfoContext(ctx, "batch started", "queued", len(next))
	}
	if completed {
		p.outbox.Announce(ctx, event.Key{Type: event.BatchCompleted, Subject: payload.BatchID.String()})
	}
	p.enqueueRecords(ctx, payload.BatchID, next)
	return nil
}

// HandleImportRecord takes one record through Sumsub: the record claimed
// (the attempt marked, and its entity checked, before the permit is taken,
// so that nothing but the request itself stands between the permit and
// Sumsub's clock), a permit of the global limiter, the call, and the outcome
// stored with the entity and the batch counters.
func (p *Processor) HandleImportRecord(ctx context.Context, t *asynq.Task) error {
	var payload ImportRecordPayload
	if err := json.Unmarshal(t.Payload(), &payload); err != nil {
		return fmt.Errorf("payload: %v: %w", err, asynq.SkipRetry)
	}
	batchID, row := payload.BatchID, payload.Row
	ctx = logging.With(ctx, slog.String("batch_id", batchID.String()), slog.Int("row", row))

	rec, ok, err := p.records.claim(ctx, batchID, row, p.cfg.AttemptLease)
	if err != nil {
		return err
	}
	if !ok {
		return p.unclaimed(ctx, batchID, row)
	}
	// A record of no entity is not sent: its share token stays unused.
	exists, err := entity.Exists(ctx, p.records.pool, rec.BusinessID, rec.ExternalID)
	if err != nil || !exists {
		if uerr := p.records.unmarkAttempt(context.WithoutCancel(ctx), batchID, row); uerr != nil {
			return uerr
		}
		if err != nil {
			return err
		}
		return p.finish(ctx, batchID, row, nil, outcome{Status: "failed", ErrorCode: CodeEntityNotFound, ErrorMessage: msgEntityNotFound})
	}
	waitStart := time.Now()
	err = p.limiter.Wait(ctx, p.cfg.MaxWait)
	p.metrics.LimiterWait.Observe(time.Since(waitStart).Seconds())
	if err != nil {
		// No call was made: the attempt did not happen.
		if uerr := p.records.unmarkAttempt(context.WithoutCancel(ctx), batchID, row); uerr != nil {
			return uerr
		}
		var tooLong *ratelimit.WaitTooLongError
		if errors.As(err, &tooLong) {
			return taskqueue.Snooze(tooLong.RetryAfter+rand.N(50*time.Millisecond), "waiting for a Sumsub rate-limit permit")
		}
		return fmt.Errorf("rate limiter: %w", err)
	}
	level := rec.ApplicantLevel
	if level == "" {
		level = p.cfg.DefaultLevel
	}
	callStart := time.Now()
	applicant, err := p.sumsub.ReuseApplicant(ctx, rec.ShareToken, level)
	label := callOutcome(err)
	p.metrics.SumsubCalls.WithLabelValues(label).Inc()
	p.metrics.SumsubDuration.WithLabelValues(label).Observe(time.Since(callStart).Seconds())
	if err == nil {
		return p.finish(ctx, batchID, row, &rec, imported(applicant))
	}

	var se *sumsub.Error
	if !errors.As(err, &se) {
		return err // the context ended mid-call: the attempt stays unanswered
	}
	if se.Kind == sumsub.Permanent {
		o := outcome{Status: "failed", ErrorCode: sumsubCode(se), ErrorMessage: redact(se.Description, rec.ShareToken)}
		// A used token after an attempt whose answer was lost: that attempt
		// may well have imported the applicant, so say we do not know.
		if se.Code == sumsub.CodeInvalidShareToken && rec.Attempt-1 > rec.Answered {
			o.ErrorCode, o.ErrorMessage = CodeOutcomeUnknown, msgOutcomeUnknown
		}
		return p.finish(ctx, batchID, row, &rec, o)
	}
	if se.Kind == sumsub.RateLimited {
		return p.rateLimited(ctx, batchID, row, se)
	}
	// Sumsub refused the call without running it (503): the token is unused.
	if se.HTTPStatus == http.StatusServiceUnavailable {
		if err := p.records.markAnswered(context.WithoutCancel(ctx), batchID, row); err != nil {
			return err
		}
	}
	if rec.Attempt >= MaxAttempts {
		return p.finish(ctx, batchID, row, &rec, outcome{Status: "failed", ErrorCode: CodeSumsubUnavailable,
			ErrorMessage: fmt.Sprintf("no answer from Sumsub after %d attempts: %s", rec.Attempt, redact(se.Error(), rec.ShareToken))})
	}
	p.logger.WarnContext(ctx, "sumsub call failed; will retry", "attempt", rec.Attempt, "error", redact(se.Error(), rec.ShareToken))
	if se.RetryAfter > 0 {
		return taskqueue.RetryIn(se.RetryAfter+rand.N(250*time.Millisecond), se)
	}
	return se
}

// rateLimited handles Sumsub's 429: the request was refused unrun, so the
// attempt is taken back and does not count against MaxAttempts (a burst of
// 429s must not fail records that Sumsub never looked at). The task comes
// back after Sumsub's Retry-After or, without one, after 0.2 s doubling up
// to 30 s, so that its retries span about ten minutes; the record fails with
// SUMSUB_RATE_LIMITED only once they are spent.
func (p *Processor) rateLimited(ctx context.Context, batchID uuid.UUID, row int, se *sumsub.Error) error {
	if err := p.records.unmarkAttempt(context.WithoutCancel(ctx), batchID, row); err != nil {
		return err
	}
	retried, _ := asynq.GetRetryCount(ctx)
	if most, ok := asynq.GetMaxRetry(ctx); ok && retried >= most {
		return p.finish(ctx, batchID, row, nil, outcome{Status: "failed", ErrorCode: CodeSumsubRateLimited,
			ErrorMessage: fmt.Sprintf("Sumsub refused %d requests with 429 Too Many Requests", retried+1)})
	}
	if se.RetryAfter > 0 {
		return taskqueue.RetryIn(se.RetryAfter+rand.N(250*time.Millisecond), se)
	}
	backoff := min(200*time.Millisecond<<min(retried, 8), 30*time.Second)
	return taskqueue.RetryIn(backoff/2+rand.N(backoff/2+1), se)
}

// storeRetry is how long a worker keeps trying to store an outcome. Sumsub's
// answer exists nowhere else, and a token once imported cannot be imported
// again: were the task to fail, its retry could only say the outcome is
// unknown. So a PostgreSQL outage shorter than this loses no answer.
const storeRetry = time.Minute

// unclaimed handles a record that claim did not mark for a call: already
// final (a task delivered twice), its batch cancelled or not in progress, or
// an earlier attempt still in another task's hands.
func (p *Processor) unclaimed(ctx context.Context, batchID uuid.UUID, row int) error {
	rec, err := p.records.record(ctx, batchID, row, p.cfg.AttemptLease)
	switch {
	case errors.Is(err, errNoRecord):
		return nil
	case err != nil:
		return err
	case rec.Status != "pending":
		return nil
	case rec.BatchStatus == "cancelled":
		o := outcome{Status: "cancelled"}
		if rec.Attempts > rec.Answered {
			o.ErrorCode, o.ErrorMessage = CodeOutcomeUnknown, msgOutcomeUnknown
		}
		return p.finish(ctx, batchID, row, nil, o)
	case rec.BatchStatus != "in_progress":
		return fmt.Errorf("batch is %s, not in progress", rec.BatchStatus)
	case rec.LeaseLeft > 0:
		return taskqueue.Snooze(max(rec.LeaseLeft, 100*time.Millisecond)+rand.N(50*time.Millisecond), "another task is calling Sumsub for this record")
	}
	// The record changed between the claim and this read: try again.
	return fmt.Errorf("record %s changed while being claimed", recordTaskID(batchID, row))
}

// finish stores an outcome (of the claimed record c, when a call was made)
// and queues the records that enter the batch's window.
func (p *Processor) finish(ctx context.Context, batchID uuid.UUID, row int, c *claimed, o outcome) error {
	// The outcome is stored even if the task's context ends now: Sumsub has answered.
	ctx = context.WithoutCancel(ctx)
	next, done, err := p.records.finish(ctx, batchID, row, c, o, p.cfg.Window)
	for delay, deadline := 100*time.Millisecond, time.Now().Add(storeRetry); err != nil && time.Now().Add(delay).Before(deadline); delay = min(2*delay, 2*time.Second) {
		p.logger.WarnContext(ctx, "store the outcome; retrying", "in", delay, "error", err)
		time.Sleep(delay)
		next, done, err = p.records.finish(ctx, batchID, row, c, o, p.cfg.Window)
	}
	if err != nil || !done {
		return err
	}
	p.metrics.Records.WithLabelValues(o.Status).Inc()
	p.logger.InfoContext(ctx, "record finished", "status", o.Status, "error_code", o.ErrorCode)
	p.enqueueRecords(ctx, batchID, next)
	completed, err := p.records.completeIfDone(ctx, batchID)
	switch {
	case err != nil:
		p.logger.WarnContext(ctx, "complete the batch; the reconciler will", "error", err)
	case completed:
		p.logger.InfoContext(ctx, "batch completed")
		p.outbox.Announce(ctx, event.Key{Type: event.BatchCompleted, Subject: batchID.String()})
	}
	return nil
}

// enqueueRecords puts the records' tasks on the Sumsub queue. A failure is
// logged only: the records are marked queued, and the reconciler enqueues
// whatever Redis does not have.
func (p *Processor) enqueueRecords(ctx context.Context, batchID uuid.UUID, rows []int) {
	for _, row := range rows {
		if err := taskqueue.EnqueueOnce(ctx, p.queue, p.inspector, NewImportRecordTask(batchID, row), QueueSumsub, recordTaskID(batchID, row)); err != nil {
			p.logger.WarnContext(ctx, "enqueue record; the reconciler will retry", "row", row, "error", err)
		}
	}
}

// reconcileBatchLimit bounds the batches one reconciler run looks at.
const reconcileBatchLimit = 1000

// Reconcile makes Redis hold a task for every piece of unfinished batch work
// in PostgreSQL: each active batch is started (idempotent: it fills its
// window), and every record of a window gets its task back if Redis lost it.
// It also deletes the raw files of uploads whose batch was never stored.
func (p *Processor) Reconcile(ctx context.Context) error {
	batches, err := p.records.activeBatches(ctx, reconcileBatchLimit)
	if err != nil {
		return err
	}
	requeued := 0
	var errs []error
	for _, id := range batches {
		_, _, completed, err := p.records.start(ctx, id, p.cfg.Window)
		if err != nil {
			return err
		}
		if completed {
			p.outbox.Announce(ctx, event.Key{Type: event.BatchCompleted, Subject: id.String()})
		}
		rows, err := p.records.queuedRows(ctx, id)
		if err != nil {
			return err
		}
		for _, row := range rows {
			// One record that cannot be re-enqueued must not hold back the others.
			if err := taskqueue.EnqueueOnce(ctx, p.queue, p.inspector, NewImportRecordTask(id, row), QueueSumsub, recordTaskID(id, row)); err != nil {
				errs = append(errs, fmt.Errorf("re-enqueue %s: %w", recordTaskID(id, row), err))
				continue
			}
			requeued++
		}
	}
	swept, err := SweepUploads(ctx, p.records.pool, p.files)
	if swept > 0 {
		p.logger.WarnContext(ctx, "deleted the raw files of uploads that were never stored", "files", swept)
	}
	p.logger.DebugContext(ctx, "reconciled", "active_batches", len(batches), "queued_records_checked", requeued)
	return errors.Join(append(errs, err)...)
}

// callOutcome labels a Sumsub call for the metrics.
func callOutcome(err error) string {
	var se *sumsub.Error
	switch {
	case err == nil:
		return "success"
	case !errors.As(err, &se):
		return "transient" // the call was cut short (a shutdown)
	case se.Kind == sumsub.Permanent:
		return "permanent"
	case se.Kind == sumsub.RateLimited:
		return "rate_limited"
	default:
		return "transient"
	}
}

// imported is the outcome of a successful import.
func imported(a sumsub.Applicant) outcome {
	kyc := "PENDING"
	if a.Review.Status == "completed" {
		switch a.Review.Answer {
		case "GREEN":
			kyc = "APPROVED"
		case "RED":
			kyc = "REJECTED"
		}
	}
	return outcome{Status: "succeeded", ApplicantID: a.ID, ReviewStatus: a.Review.Status, ReviewAnswer: a.Review.Answer, KYCStatus: kyc}
}

// sumsubCode names a Sumsub refusal: SUMSUB_<errorName> (SUMSUB_INVALID_SHARE_TOKEN), or SUMSUB_HTTP_<status>.
func sumsubCode(e *sumsub.Error) string {
	if e.Name != "" {
		return "SUMSUB_" + strings.ToUpper(strings.NewReplacer("-", "_", " ", "_").Replace(e.Name))
	}
	return fmt.Sprintf("SUMSUB_HTTP_%d", e.HTTPStatus)
}

// redact removes the share token from a text Sumsub wrote (its descriptions may quote the token).
func redact(text, shareToken string) string {
	if shareToken == "" {
		return text
	}
	return strings.ReplaceAll(text, shareToken, "[share token]")
}
