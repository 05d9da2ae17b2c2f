package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/metrics"
	"github.com/kycbatch/kycbatch/internal/ratelimit"
	"github.com/kycbatch/kycbatch/internal/schedule"
	"github.com/kycbatch/kycbatch/internal/sumsub"
)

// Importer imports an applicant from a share token; *sumsub.Client is one.
// The pipeline needs nothing else of Sumsub.
type Importer interface {
	ReuseApplicant(ctx context.Context, shareToken, levelName string) (sumsub.Applicant, error)
}

// Limiter hands out permits for Sumsub calls; *ratelimit.Limiter is one,
// shared by every worker process.
type Limiter interface {
	Wait(ctx context.Context, maxWait time.Duration) error
}

// PipelineConfig tunes the pipeline.
type PipelineConfig struct {
	// Concurrency bounds the records one process has in flight: its Sumsub
	// calls at once.
	Concurrency int
	// DefaultLevel is the level of records that name none; empty: Sumsub's default.
	DefaultLevel string
	// AttemptLease is how long a call may be in flight: the Sumsub client's
	// timeout and a margin. A record whose last attempt is unanswered and
	// younger than this is not sent again, so that two calls for one token
	// never race; once it is over, the call is taken for lost (its worker
	// died) and the record may be sent again.
	AttemptLease time.Duration
	// ShutdownTimeout is how long the calls in flight may finish when the
	// worker stops; a call cut short leaves its attempt unanswered.
	ShutdownTimeout time.Duration
}

// Pipeline sends records to Sumsub: every permit of the global limiter goes
// to the record the scheduler picks at that moment (permit first, then the
// decision), so that a batch uploaded now competes for the very next
// permit, and nothing is queued ahead of it. Each process runs one
// Pipeline; they share the limit and the schedule through Redis, and
// PostgreSQL holds every record's state.
type Pipeline struct {
	records records
	files   FileStore
	sumsub  Importer
	limiter Limiter
	sched   *schedule.Scheduler
	outbox  *event.Outbox
	cfg     PipelineConfig
	logger  *slog.Logger
	metrics *metrics.Metrics
}

// NewPipeline returns a Pipeline; files holds the raw uploads the reconciler sweeps.
func NewPipeline(pool *pgxpool.Pool, files FileStore, importer Importer, limiter Limiter, sched *schedule.Scheduler,
	outbox *event.Outbox, cfg PipelineConfig, logger *slog.Logger, m *metrics.Metrics) *Pipeline {
	return &Pipeline{records: records{pool: pool}, files: files, sumsub: importer, limiter: limiter, sched: sched,
		outbox: outbox, cfg: cfg, logger: logger, metrics: m}
}

// idleCheck is how often an idle pipeline asks the schedule for work even
// without being woken: a wake-up lost with a Redis connection costs no more.
const idleCheck = 5 * time.Second

// Run sends records until ctx ends, then lets the calls in flight finish
// for up to the shutdown timeout. While no record waits, it takes no permit
// and asks the schedule one question every idleCheck, or when woken (work
// added anywhere wakes every worker) or when the first retry comes due.
func (p *Pipeline) Run(ctx context.Context) error {
	// Calls outlive ctx by the shutdown timeout: an answer Sumsub gives is stored.
	calls, stopCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCalls()
	woken := make(chan struct{}, 1)
	go p.sched.Watch(ctx, func() {
		select {
		case woken <- struct{}{}:
		default:
		}
	})

	slots := make(chan struct{}, p.cfg.Concurrency)
	var wg sync.WaitGroup
	idle, check := true, time.Now() // while idle: no permit is taken, the schedule is asked at check
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case slots <- struct{}{}:
		}
		for idle {
			t := time.NewTimer(time.Until(check))
			select {
			case <-ctx.Done():
				t.Stop()
				break loop
			case <-woken:
			case <-t.C:
			}
			t.Stop()
			ready, wake, err := p.sched.Ready(ctx)
			if errors.Is(err, schedule.ErrLost) {
				if err = p.Sync(ctx); err == nil {
					continue // ask again, of the schedule rebuilt
				}
			}
			if err != nil {
				p.logger.WarnContext(ctx, "ask the schedule for work; trying again", "error", err)
			}
			idle, check = !ready, time.Now().Add(idleCheck)
			if !wake.IsZero() && wake.Before(check) {
				check = wake
			}
		}
		pick, ok, err := p.next(ctx)
		if err != nil || !ok {
			<-slots
			if ctx.Err() != nil {
				break loop
			}
			idle, check = true, time.Now().Add(idleCheck)
			if err != nil {
				p.logger.WarnContext(ctx, "schedule the next record; trying again", "error", err)
			} else if !pick.wake.IsZero() && pick.wake.Before(check) {
				check = pick.wake
			}
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			p.send(calls, pick.Pick)
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.cfg.ShutdownTimeout):
		stopCalls()
		<-done
	}
	return nil
}

// nextPick is a scheduling decision, or when to ask again.
type nextPick struct {
	schedule.Pick
	wake time.Time // with no pick: when the first retry comes due (zero: none)
}

// next takes a permit of the global limiter, then asks the schedule whose
// record it goes to. A permit taken when the last record has just been
// handed out is wasted: one per stretch of work.
func (p *Pipeline) next(ctx context.Context) (nextPick, bool, error) {
	start := time.Now()
	for {
		err := p.limiter.Wait(ctx, time.Minute)
		var tooLong *ratelimit.WaitTooLongError
		if errors.As(err, &tooLong) {
			continue // other processes have the permits; keep waiting
		}
		if err != nil {
			return nextPick{}, false, err
		}
		break
	}
	p.metrics.LimiterWait.Observe(time.Since(start).Seconds())
	pick, ok, wake, err := p.sched.Next(ctx)
	if errors.Is(err, schedule.ErrLost) {
		if err := p.Sync(ctx); err != nil {
			return nextPick{}, false, err
		}
		pick, ok, wake, err = p.sched.Next(ctx)
	}
	return nextPick{Pick: pick, wake: wake}, ok, err
}

// send takes the picked batch's next record through Sumsub: claimed (the
// attempt marked before the call), its entity checked, the call, and the
// outcome stored with the entity and the batch counters, or the record put
// back to wait out a retry.
func (p *Pipeline) send(ctx context.Context, pick schedule.Pick) {
	ctx = logging.With(ctx, slog.String("batch_id", pick.Batch.String()))
	c, ok, err := p.records.claim(ctx, pick.Batch, p.cfg.AttemptLease)
	if err != nil {
		p.logger.WarnContext(ctx, "claim a record; the reconciler will put the batch back", "error", err)
		return
	}
	if !ok {
		// Nothing to send now: the scheduler's count was ahead. Records in
		// flight or waiting out a retry come back by themselves.
		if err := p.sched.Drop(ctx, pick.Business, pick.Batch, true); err != nil {
			p.logger.WarnContext(ctx, "drop a batch from the schedule", "error", err)
		}
		return
	}
	ctx = logging.With(ctx, slog.Int("row", c.Row))
	if pick.Last {
		p.mend(ctx, pick)
	}
	if err := p.sendClaimed(ctx, &c); err != nil {
		p.logger.ErrorContext(ctx, "send a record; the reconciler will retry it", "error", err)
	}
}

// mend puts back in the schedule the records of a batch whose count ran out
// while some may still be sent (a pick whose claim a crash lost).
func (p *Pipeline) mend(ctx context.Context, pick schedule.Pick) {
	n, err := p.records.eligible(ctx, pick.Batch, p.cfg.AttemptLease)
	if err == nil && n > 0 {
		err = p.sched.Add(ctx, pick.Business, 0, pick.Batch, n)
	}
	if err != nil {
		p.logger.WarnContext(ctx, "count what is left of a batch; the reconciler will", "error", err)
	}
}

func (p *Pipeline) sendClaimed(ctx context.Context, c *claimed) error {
	// A record of no entity is not sent: its share token stays unused.
	exists, err := entity.Exists(ctx, p.records.pool, c.BusinessID, c.ExternalID)
	if err != nil || !exists {
		if uerr := p.records.unmarkAttempt(context.WithoutCancel(ctx), c); uerr != nil {
			return uerr
		}
		if err != nil {
			return err
		}
		return p.finish(ctx, c.BatchID, c.Row, nil, outcome{Status: "failed", ErrorCode: CodeEntityNotFound, ErrorMessage: msgEntityNotFound})
	}
	level := c.ApplicantLevel
	if level == "" {
		level = p.cfg.DefaultLevel
	}
	callStart := time.Now()
	applicant, err := p.sumsub.ReuseApplicant(ctx, c.ShareToken, level)
	label := callOutcome(err)
	p.metrics.SumsubCalls.WithLabelValues(label).Inc()
	p.metrics.SumsubDuration.WithLabelValues(label).Observe(time.Since(callStart).Seconds())
	if err == nil {
		return p.finish(ctx, c.BatchID, c.Row, c, imported(applicant))
	}

	var se *sumsub.Error
	if !errors.As(err, &se) {
		// The worker stopped mid-call: the attempt stays unanswered, and the
		// record goes back once its lease is over.
		return p.retry(ctx, c, lost, time.Now().Add(p.cfg.AttemptLease))
	}
	switch {
	case se.Kind == sumsub.Permanent:
		o := outcome{Status: "failed", ErrorCode: sumsubCode(se), ErrorMessage: redact(se.Description, c.ShareToken)}
		// A used token after an attempt whose answer was lost: that attempt
		// may well have imported the applicant, so say we do not know.
		if se.Code == sumsub.CodeInvalidShareToken && c.Attempt-1 > c.Answered {
			o.ErrorCode, o.ErrorMessage = CodeOutcomeUnknown, msgOutcomeUnknown
		}
		return p.finish(ctx, c.BatchID, c.Row, c, o)
	case se.Kind == sumsub.RateLimited:
		return p.rateLimited(ctx, c, se)
	case c.Attempt >= MaxAttempts:
		return p.finish(ctx, c.BatchID, c.Row, c, outcome{Status: "failed", ErrorCode: CodeSumsubUnavailable,
			ErrorMessage: fmt.Sprintf("no answer from Sumsub after %d attempts: %s", c.Attempt, redact(se.Error(), c.ShareToken))})
	}
	p.logger.WarnContext(ctx, "sumsub call failed; will retry", "attempt", c.Attempt, "error", redact(se.Error(), c.ShareToken))
	a := lost
	if se.HTTPStatus == http.StatusServiceUnavailable {
		a = unused // Sumsub refused the call without running it: the token is unused
	}
	return p.retry(ctx, c, a, time.Now().Add(retryAfter(se, backoff(c.Attempt, time.Second, 5*time.Minute))))
}

// maxRefusals is how many 429s a record takes before it fails with
// SUMSUB_RATE_LIMITED: with their backoff (0.2 s doubling to 30 s) about ten
// minutes of Sumsub refusing.
const maxRefusals = 24

// rateLimited handles Sumsub's 429: the request was refused unrun, so the
// attempt is taken back and does not count against MaxAttempts (a burst of
// 429s must not fail records that Sumsub never looked at). The record comes
// back after Sumsub's Retry-After or, without one, after 0.2 s doubling up
// to 30 s.
func (p *Pipeline) rateLimited(ctx context.Context, c *claimed, se *sumsub.Error) error {
	if c.Refusals+1 >= maxRefusals {
		return p.finish(ctx, c.BatchID, c.Row, c, outcome{Status: "failed", ErrorCode: CodeSumsubRateLimited,
			ErrorMessage: fmt.Sprintf("Sumsub refused %d requests with 429 Too Many Requests", c.Refusals+1)})
	}
	return p.retry(ctx, c, refused, time.Now().Add(retryAfter(se, backoff(c.Refusals+1, 200*time.Millisecond, 30*time.Second))))
}

// backoff is the wait before retry n (from 1): base doubling up to most, with jitter.
func backoff(n int, base, most time.Duration) time.Duration {
	d := min(base<<min(n-1, 20), most)
	return d/2 + rand.N(d/2+1)
}

// retryAfter is Sumsub's Retry-After, when it sent one, else fallback.
func retryAfter(se *sumsub.Error, fallback time.Duration) time.Duration {
	if se.RetryAfter > 0 {
		return se.RetryAfter + rand.N(250*time.Millisecond)
	}
	return fallback
}

// retry puts a record back until at, in PostgreSQL and in the schedule.
func (p *Pipeline) retry(ctx context.Context, c *claimed, a answer, at time.Time) error {
	ctx = context.WithoutCancel(ctx)
	if err := p.records.retryLater(ctx, c, a, at); err != nil {
		return err
	}
	return p.sched.Later(ctx, c.BusinessID, c.BatchID, c.Row, at)
}

// storeRetry is how long a worker keeps trying to store an outcome. Sumsub's
// answer exists nowhere else, and a token once imported cannot be imported
// again: were it dropped, a retry could only say the outcome is unknown. So
// a PostgreSQL outage shorter than this loses no answer.
const storeRetry = time.Minute

// finish stores an outcome (of the claimed record c, when a call was made),
// then completes the batch when it was its last record.
func (p *Pipeline) finish(ctx context.Context, batchID uuid.UUID, row int, c *claimed, o outcome) error {
	// The outcome is stored even if the context ends now: Sumsub has answered.
	ctx = context.WithoutCancel(ctx)
	done, err := p.records.finish(ctx, batchID, row, c, o)
	for delay, deadline := 100*time.Millisecond, time.Now().Add(storeRetry); err != nil && time.Now().Add(delay).Before(deadline); delay = min(2*delay, 2*time.Second) {
		p.logger.WarnContext(ctx, "store the outcome; retrying", "in", delay, "error", err)
		time.Sleep(delay)
		done, err = p.records.finish(ctx, batchID, row, c, o)
	}
	if err != nil || !done {
		return err
	}
	p.metrics.Records.WithLabelValues(o.Status).Inc()
	p.logger.InfoContext(ctx, "record finished", "status", o.Status, "error_code", o.ErrorCode)
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
