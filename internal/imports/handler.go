package imports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/ratelimit"
	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
)

// Result is what a finished record task shows in the dashboard: the
// record's outcome, or why the task had nothing to do. Never a token.
type Result struct {
	Status      string `json:"status,omitempty"`
	ApplicantID string `json:"applicantId,omitempty"`
	ErrorCode   string `json:"errorCode,omitempty"`
	// Skipped says why the task made no call (the record was final, or
	// another feed's task has it).
	Skipped string `json:"skipped,omitempty"`
}

// ProcessTask runs a record's task: it claims the record (its attempt
// marked before the call), takes a permit of the global limiter, calls
// Sumsub and stores the outcome. A record's own failure (a refused token, an
// unknown level) is its outcome: the task completes. A call to retry (a 5xx,
// a timeout, a 429) leaves the task to Asynq's retry, with the error and
// the next attempt's time. Nothing is called while ops pause the queue
// (Asynq hands out no task of a paused queue, and a task running when it
// was paused gives its permit up) or Sumsub's circuit is open: the task is
// snoozed, no attempt counted.
func (r *Records) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p Payload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("payload: %v: %w", err, asynq.SkipRetry)
	}
	batch, err := uuid.Parse(p.BatchID)
	if err != nil {
		return fmt.Errorf("payload: batchId: %v: %w", err, asynq.SkipRetry)
	}
	ref := ingest.Ref{Batch: batch, Row: p.Row, Feed: p.Feed}
	ctx = logging.With(ctx, slog.String("batch_id", p.BatchID), slog.Int("row", p.Row))
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("kycbatch.batch_id", p.BatchID), attribute.Int("kycbatch.row", p.Row))
	leave := r.pause.enter(ctx)
	defer func() {
		leave()
		r.done.notify() // the window has room
	}()
	if until := r.cfg.Circuit.Allow(ctx, r.probe); !until.IsZero() {
		return taskqueue.Snooze(max(time.Until(until), 0)+jitter(), circuitOpen)
	}
	claim, err := r.claims.do(ctx, ref)
	if err != nil {
		return err
	}
	if claim.Not != nil {
		return r.notClaimed(ctx, t, ref, claim.Not)
	}
	c := claim.Claimed
	start := time.Now()
	if err := r.cfg.Limiter.Wait(ctx, maxPermitWait); err != nil {
		r.unclaim(ctx, c)
		var tooLong *ratelimit.WaitTooLongError
		if errors.As(err, &tooLong) {
			return taskqueue.Snooze(tooLong.RetryAfter+jitter(), "no Sumsub permit soon enough: the rate is taken")
		}
		return err
	}
	r.cfg.Metrics.LimiterWait.Observe(time.Since(start).Seconds())
	// The queue paused or the circuit opened while the task waited: the
	// permit goes unused.
	if r.pause.isPaused() {
		r.unclaim(ctx, c)
		return taskqueue.Snooze(time.Second, "queue "+Queue+" is paused")
	}
	if r.cfg.Circuit.IsOpen() {
		r.unclaim(ctx, c)
		return taskqueue.Snooze(time.Second+jitter(), circuitOpen)
	}
	if c.Attempt+c.Refusals > 1 {
		// A retry goes back to the queue by itself, outside the schedule:
		// the business pays for it from its share all the same.
		if err := r.cfg.Schedule.Charge(ctx, c.BusinessID, 1); err != nil {
			r.cfg.Logger.WarnContext(ctx, "charge a retry to its business", "error", err)
		}
	}
	return r.call(ctx, t, c)
}

// circuitOpen is why a task is snoozed while Sumsub's circuit is open.
const circuitOpen = "the Sumsub circuit is open: no record is sent until Sumsub answers a probe"

// notClaimed ends a task that could not claim its record.
func (r *Records) notClaimed(ctx context.Context, t *asynq.Task, ref ingest.Ref, nc *ingest.NotClaimed) error {
	switch {
	case !nc.Until.IsZero():
		return taskqueue.Snooze(time.Until(nc.Until)+jitter(), nc.Error())
	case nc.BatchStatus != "" && !nc.Superseded && nc.Status == ingest.RecordPending:
		// Its batch was cancelled while a call of it was in flight, and
		// that call's answer is lost (or it must be retried): the record
		// ends cancelled, its outcome unknown if the call may have run.
		o := ingest.Outcome{Status: ingest.RecordCancelled}
		if nc.Unanswered {
			o.ErrorCode, o.ErrorMessage = ingest.CodeOutcomeUnknown, ingest.MsgOutcomeUnknown
		}
		return r.finish(ctx, t, ingest.Final{Batch: ref.Batch, Row: ref.Row, Outcome: o}, "")
	}
	return r.writeResult(ctx, t, Result{Skipped: nc.Error()})
}

// call makes the claimed record's Sumsub call and stores its outcome, or
// leaves the record to its task's retry.
func (r *Records) call(ctx context.Context, t *asynq.Task, c ingest.Claimed) error {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.Int("kycbatch.attempt", c.Attempt))
	level := c.ApplicantLevel
	if level == "" {
		level = r.cfg.DefaultLevel
	}
	callStart := time.Now()
	applicant, err := r.cfg.Sumsub.ReuseApplicant(ctx, c.ShareToken, level)
	took := time.Since(callStart)
	r.latency.add(took)
	label := callOutcome(err)
	span.SetAttributes(attribute.String("kycbatch.sumsub_outcome", label))
	r.cfg.Metrics.SumsubCalls.WithLabelValues(label).Inc()
	r.cfg.Metrics.BusinessCalls.WithLabelValues(c.BusinessID.String()).Inc()
	r.cfg.Metrics.SumsubDuration.WithLabelValues(label).Observe(took.Seconds())
	// A condition of Sumsub as a whole opens the circuit; while it is open,
	// no record is charged for it.
	open := r.cfg.Circuit.Observe(ctx, err)
	final := ingest.Final{Batch: c.Batch, Row: c.Row, Claimed: &c}
	if err == nil {
		final.Outcome = ingest.Outcome{Status: ingest.RecordSucceeded, ApplicantID: applicant.ID,
			ReviewStatus: applicant.Review.Status, ReviewAnswer: applicant.Review.Answer}
		return r.finish(ctx, t, final, entityStatus(applicant))
	}

	var se *sumsub.Error
	if !errors.As(err, &se) {
		// The worker stopped mid-call: the attempt stays unanswered, and
		// the task comes back once its lease is over.
		return taskqueue.Snooze(r.cfg.lease(), "the worker stopped during the Sumsub call")
	}
	switch {
	case se.Kind == sumsub.Permanent:
		final.Outcome = ingest.Outcome{Status: ingest.RecordFailed, ErrorCode: sumsubCode(se), ErrorMessage: se.Message()}
		// A used token after an attempt whose answer was lost: that attempt
		// may well have imported the applicant, so say we do not know.
		if se.Code == sumsub.CodeInvalidShareToken && c.Attempt-1 > c.Answered {
			final.Outcome.ErrorCode, final.Outcome.ErrorMessage = ingest.CodeOutcomeUnknown, ingest.MsgOutcomeUnknown
		}
		return r.finish(ctx, t, final, "")
	case se.Kind == sumsub.RateLimited:
		if c.Refusals+1 >= maxRefusals {
			final.Outcome = ingest.Outcome{Status: ingest.RecordFailed, ErrorCode: ingest.CodeSumsubRateLimited,
				ErrorMessage: fmt.Sprintf("Sumsub refused %d requests with 429 Too Many Requests", c.Refusals+1)}
			return r.finish(ctx, t, final, "")
		}
		// Refused unrun: not an attempt (a burst of 429s must not fail
		// records that Sumsub never looked at).
		return r.retry(ctx, c, ingest.Refused, retryAfter(se, taskqueue.Backoff(c.Refusals+1, time.Second, 30*time.Second)), se)
	case se.Kind == sumsub.Unauthorized || open && se.HTTPStatus == http.StatusServiceUnavailable:
		// Refused unrun for a reason that is not the record's: not an
		// attempt. The record goes again once the circuit closes.
		r.unclaim(ctx, c)
		return taskqueue.Snooze(time.Second+jitter(), "Sumsub refused the call for a reason that is not the record's (the circuit opens): "+se.Error())
	case c.Attempt >= MaxAttempts && !open:
		final.Outcome = ingest.Outcome{Status: ingest.RecordFailed, ErrorCode: ingest.CodeSumsubUnavailable,
			ErrorMessage: fmt.Sprintf("no answer from Sumsub after %d attempts: %s", c.Attempt, se.Error())}
		return r.finish(ctx, t, final, "")
	}
	r.cfg.Logger.WarnContext(ctx, "sumsub call failed; will retry", "attempt", c.Attempt, "error", se.Error())
	a := ingest.Lost
	if se.HTTPStatus == http.StatusServiceUnavailable {
		a = ingest.Unused // Sumsub refused the call without running it: the token is unused
	}
	return r.retry(ctx, c, a, retryAfter(se, taskqueue.Backoff(c.Attempt, time.Second, 5*time.Minute)), se)
}

// retry records what became of the call and hands the task back to
// Asynq's retry, due after d, with the error the dashboard shows.
func (r *Records) retry(ctx context.Context, c ingest.Claimed, a ingest.Answer, d time.Duration, se *sumsub.Error) error {
	if err := ingest.RetryLater(context.WithoutCancel(ctx), r.cfg.Pool, c, a); err != nil {
		return err
	}
	what := "attempt " + fmt.Sprint(c.Attempt)
	if a == ingest.Refused {
		what = "refused unrun (not an attempt)"
	}
	return taskqueue.RetryIn(d, fmt.Errorf("sumsub call, %s: %s", what, se.Error()))
}

// unclaim takes back an attempt marked for a call that was not made.
func (r *Records) unclaim(ctx context.Context, c ingest.Claimed) {
	if err := ingest.Unclaim(context.WithoutCancel(ctx), r.cfg.Pool, c); err != nil {
		r.cfg.Logger.WarnContext(ctx, "take back an attempt not made; it counts as lost", "error", err)
	}
}

// storeRetry is how long a worker keeps trying to store an outcome. Sumsub's
// answer exists nowhere else, and a token once imported cannot be imported
// again: were it dropped, a retry could only say the outcome is unknown. So
// a PostgreSQL outage shorter than this loses no answer.
const storeRetry = time.Minute

// finish stores an outcome (kyc: the entity's status after an import),
// completes the batch when it was its last record, and writes the task's
// result.
func (r *Records) finish(ctx context.Context, t *asynq.Task, f ingest.Final, kyc string) error {
	// The outcome is stored even if the context ends now: Sumsub has answered.
	ctx = context.WithoutCancel(ctx)
	f.KYCStatus = kyc
	res, err := r.outcomes.do(ctx, f)
	// Retried alone: an outcome PostgreSQL refuses fails no other.
	for delay, deadline := 100*time.Millisecond, time.Now().Add(storeRetry); err != nil && time.Now().Add(delay).Before(deadline); delay = min(2*delay, 2*time.Second) {
		r.cfg.Logger.WarnContext(ctx, "store the outcome; retrying", "in", delay, "error", err)
		time.Sleep(delay)
		var list []ingest.Stored
		if list, err = ingest.StoreOutcomes(ctx, r.cfg.Pool, []ingest.Final{f}); err == nil {
			res = list[0]
		}
	}
	if err != nil {
		return err
	}
	o := f.Outcome
	if !res.Stored {
		return r.writeResult(ctx, t, Result{Skipped: "the record was final already"})
	}
	r.cfg.Metrics.Records.WithLabelValues(o.Status).Inc()
	r.cfg.Logger.InfoContext(ctx, "record finished", "status", o.Status, "error_code", o.ErrorCode)
	if res.BatchDone {
		completed, err := ingest.CompleteIfDone(ctx, r.cfg.Pool, f.Batch)
		switch {
		case err != nil:
			r.cfg.Logger.WarnContext(ctx, "complete the batch; the reconciler will", "error", err)
		case completed:
			r.cfg.Logger.InfoContext(ctx, "batch completed")
			r.cfg.Outbox.Announce(ctx, event.Key{Type: event.BatchCompleted, Subject: f.Batch.String()})
		}
	}
	return r.writeResult(ctx, t, Result{Status: o.Status, ApplicantID: o.ApplicantID, ErrorCode: o.ErrorCode})
}

// writeResult keeps res with the finished task, for the dashboard. A task
// whose result could not be written has done its work all the same: the
// outcome is in PostgreSQL, the dashboard's copy a convenience.
func (r *Records) writeResult(ctx context.Context, t *asynq.Task, res Result) error {
	b, err := json.Marshal(res)
	if err != nil {
		panic(err) // a struct of strings always marshals
	}
	if w := t.ResultWriter(); w != nil {
		if _, err := w.Write(b); err != nil {
			r.cfg.Logger.WarnContext(ctx, "write the record task's result", "error", err)
		}
	}
	return nil
}

// jitter spreads the tasks snoozed together over a quarter of a second.
func jitter() time.Duration { return rand.N(250 * time.Millisecond) }
