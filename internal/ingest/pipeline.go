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
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/semaphore"

	"github.com/kycbatch/kycbatch/internal/circuit"
	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/metrics"
	"github.com/kycbatch/kycbatch/internal/ratelimit"
	"github.com/kycbatch/kycbatch/internal/schedule"
	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/tracing"
)

// Importer imports an applicant from a share token, and probes Sumsub
// while the circuit is open; *sumsub.Client is one. The pipeline needs
// nothing else of Sumsub.
type Importer interface {
	ReuseApplicant(ctx context.Context, shareToken, levelName string) (sumsub.Applicant, error)
	Probe(ctx context.Context) error
}

// Limiter hands out permits for Sumsub calls; *ratelimit.Limiter is one,
// shared by every worker process.
type Limiter interface {
	Wait(ctx context.Context, maxWait time.Duration) error
}

// PipelineConfig tunes the pipeline.
type PipelineConfig struct {
	// Rate is Sumsub's rate limit, requests per second for every process:
	// it sizes how many records a process prepares at once.
	Rate int
	// Concurrency bounds the records one process has in flight: its Sumsub
	// calls at once.
	Concurrency int
	// DefaultLevel is the level of records that name none; empty: Sumsub's default.
	DefaultLevel string
	// CallTimeout bounds one Sumsub call (the client's timeout).
	CallTimeout time.Duration
	// ShutdownTimeout is how long the calls in flight may finish when the
	// worker stops; a call cut short leaves its attempt unanswered.
	ShutdownTimeout time.Duration
	// UploadRetention is how long a final batch's raw upload is kept before
	// the reconciler deletes it.
	UploadRetention time.Duration
}

// maxPermitWait is how long a prepared record waits for its permit before
// it is put back: the other processes have the permits, or Redis is down.
const maxPermitWait = 5 * time.Second

// lease is how long an attempt may be in flight: its permit wait, the call
// and a margin. A record whose last attempt is unanswered and younger than
// this is not sent again, so that two calls for one token never race; once
// it is over, the call is taken for lost (its worker died) and the record
// may be sent again.
func (c PipelineConfig) lease() time.Duration {
	return maxPermitWait + c.CallTimeout + 5*time.Second
}

// preparers is how many goroutines of a process prepare records: one per
// millisecond of the rate (at least one), so that preparing (a few round
// trips) never holds the rate back.
func (c PipelineConfig) preparers() int {
	return max(1, min(c.Concurrency, (c.Rate+999)/1000))
}

// claimSize is how many records a preparer picks and claims at once: what
// the rate sends in a millisecond (at least one: at Sumsub's 10/s, each
// record is picked alone, the moment before its permit). At a high rate it
// shares a pick's and a claim's round trips among several records, none
// chosen more than a few milliseconds of work before it is sent.
func (c PipelineConfig) claimSize() int {
	return max(1, min(c.Concurrency, c.Rate/1000))
}

// Pipeline sends records to Sumsub, in the order the scheduler hands them
// out: each process prepares a record (picked and claimed) just before a
// permit of the global limiter is free, and sends it the
// moment the permit comes, so that nothing but the request stands between
// the permit and Sumsub's clock, and a batch uploaded now competes for the
// next decision, with nothing queued ahead of it. The processes share the
// limit and the schedule through Redis; PostgreSQL holds every record's state.
type Pipeline struct {
	// cursors holds, for each batch, the last row this process claimed: its
	// next claim looks after it (see records.claim).
	cursors sync.Map
	records records
	// group stores outcomes that end at once together.
	group   grouper
	files   FileStore
	sumsub  Importer
	limiter Limiter
	sched   *schedule.Scheduler
	circuit *circuit.Breaker
	outbox  *event.Outbox
	cfg     PipelineConfig
	logger  *slog.Logger
	metrics *metrics.Metrics
}

// NewPipeline returns a Pipeline; files holds the raw uploads the reconciler sweeps.
func NewPipeline(pool *pgxpool.Pool, files FileStore, importer Importer, limiter Limiter, sched *schedule.Scheduler,
	breaker *circuit.Breaker, outbox *event.Outbox, cfg PipelineConfig, logger *slog.Logger, m *metrics.Metrics) *Pipeline {
	r := records{pool: pool}
	return &Pipeline{records: r, group: grouper{records: r}, files: files, sumsub: importer, limiter: limiter, sched: sched,
		circuit: breaker, outbox: outbox, cfg: cfg, logger: logger, metrics: m}
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
	woken := newSignal()
	go p.sched.Watch(ctx, woken.notify)

	slots := semaphore.NewWeighted(int64(p.cfg.Concurrency))
	var inFlight, preparers sync.WaitGroup
	for range p.cfg.preparers() {
		preparers.Go(func() { p.prepare(ctx, calls, woken, slots, &inFlight) })
	}
	preparers.Wait()
	done := make(chan struct{})
	go func() { inFlight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.cfg.ShutdownTimeout):
		stopCalls()
		<-done
	}
	return nil
}

// prepare prepares records and sends them, one at a time, until ctx ends.
func (p *Pipeline) prepare(ctx, calls context.Context, woken *signal, slots *semaphore.Weighted, inFlight *sync.WaitGroup) {
	idle, check := true, time.Now() // while idle, the schedule is asked at check
	for ctx.Err() == nil {
		if idle {
			if !woken.wait(ctx, check) && time.Now().Before(check) {
				continue
			}
			idle, check = p.idle(ctx)
			continue
		}
		// Nothing is sent while Sumsub as a whole fails (the circuit is
		// open); one process at a time probes it meanwhile.
		if until := p.circuit.Allow(ctx, p.probe); !until.IsZero() {
			idle, check = true, until
			continue
		}
		// A slot for each record before it is claimed: a claimed record
		// waits for nothing but its permit, so its lease covers it. The
		// slots of a claim are taken together, first come first served.
		n := p.cfg.claimSize()
		if slots.Acquire(ctx, int64(n)) != nil {
			return
		}
		list, ok, wake, err := p.nextRecords(ctx, n)
		slots.Release(int64(n - len(list)))
		if err != nil || !ok {
			idle, check = true, time.Now().Add(idleCheck)
			if err != nil && ctx.Err() == nil {
				p.logger.WarnContext(ctx, "prepare a record; trying again", "error", err)
			} else if !wake.IsZero() && wake.Before(check) {
				check = wake
			}
			continue
		}
		for i := range list {
			if err := p.send(ctx, calls, &list[i], slots, inFlight); err != nil {
				slots.Release(int64(len(list) - i))
				for j := i; j < len(list); j++ {
					p.unsend(ctx, &list[j])
				}
				var tooLong *ratelimit.WaitTooLongError
				if !errors.As(err, &tooLong) && ctx.Err() == nil {
					p.logger.WarnContext(ctx, "wait for a Sumsub permit; trying again", "error", err)
					idle, check = true, time.Now().Add(time.Second)
				}
				break
			}
		}
	}
}

// send sends a prepared record, which holds a slot, the moment it has a
// permit; the call runs on its own, in calls, and frees the slot. An error
// says it was not sent (the slot is still the caller's).
func (p *Pipeline) send(ctx, calls context.Context, c *claimed, slots *semaphore.Weighted, inFlight *sync.WaitGroup) error {
	start := time.Now()
	if err := p.limiter.Wait(ctx, maxPermitWait); err != nil {
		return err
	}
	p.metrics.LimiterWait.Observe(time.Since(start).Seconds())
	inFlight.Go(func() {
		defer slots.Release(1)
		if err := p.call(calls, c); err != nil {
			p.logger.ErrorContext(calls, "send a record; the reconciler will retry it", "batch_id", c.BatchID, "row", c.Row, "error", err)
		}
	})
	return nil
}

// probe sends the circuit's probe, with a permit like any call.
func (p *Pipeline) probe(ctx context.Context) error {
	if err := p.limiter.Wait(ctx, maxPermitWait); err != nil {
		return err
	}
	return p.sumsub.Probe(ctx)
}

// idle asks the schedule whether work waits (rebuilding it from PostgreSQL
// when Redis lost it), and when to ask again if none does.
func (p *Pipeline) idle(ctx context.Context) (idle bool, check time.Time) {
	ready, wake, err := p.sched.Ready(ctx)
	if errors.Is(err, schedule.ErrLost) {
		if err = p.Sync(ctx); err == nil {
			ready, wake, err = p.sched.Ready(ctx)
		}
	}
	check = time.Now().Add(idleCheck)
	if err != nil && ctx.Err() == nil {
		p.logger.WarnContext(ctx, "ask the schedule for work; trying again", "error", err)
	}
	if !wake.IsZero() && wake.Before(check) {
		check = wake
	}
	return !ready, check
}

// nextRecords prepares the records the schedule picks, at most n: claimed, their
// attempts marked before the calls. ok is false when the schedule had
// nothing to send now (wake: when the first retry is due); with ok true,
// the list is empty when the pick came to nothing (the schedule's count was
// ahead).
func (p *Pipeline) nextRecords(ctx context.Context, n int) (list []claimed, ok bool, wake time.Time, err error) {
	pick, ok, wake, err := p.sched.Next(ctx, n)
	if errors.Is(err, schedule.ErrLost) {
		if err = p.Sync(ctx); err == nil {
			pick, ok, wake, err = p.sched.Next(ctx, n)
		}
	}
	if err != nil || !ok {
		return nil, false, wake, err
	}
	after, _ := p.cursors.Load(pick.Batch)
	list, err = p.records.claim(ctx, pick.Batch, intOr(after, 0), p.cfg.lease(), pick.Count)
	if err == nil && len(list) == 0 && after != nil {
		// Nothing after the cursor: a record put back behind it, or none.
		list, err = p.records.claim(ctx, pick.Batch, 0, p.cfg.lease(), pick.Count)
	}
	if err != nil {
		return nil, false, time.Time{}, err
	}
	if len(list) == 0 {
		// Nothing to send now: records in flight or waiting out a retry
		// come back by themselves.
		p.cursors.Delete(pick.Batch)
		return nil, true, time.Time{}, p.sched.Drop(ctx, pick.Business, pick.Batch, pick.Count)
	}
	p.cursors.Store(pick.Batch, list[len(list)-1].Row)
	if pick.Last {
		p.cursors.Delete(pick.Batch)
		p.mend(ctx, pick)
	}
	return list, true, time.Time{}, nil
}

func intOr(v any, def int) int {
	if n, ok := v.(int); ok {
		return n
	}
	return def
}

// unsend returns a prepared record that was not sent: its attempt taken
// back, and the record to the schedule.
func (p *Pipeline) unsend(ctx context.Context, c *claimed) {
	ctx = context.WithoutCancel(ctx)
	err := p.records.unmarkAttempt(ctx, c)
	if err == nil {
		err = p.sched.Later(ctx, c.BusinessID, c.BatchID, c.Row, time.Now())
	}
	if err != nil {
		p.logger.WarnContext(ctx, "put back a record not sent; the reconciler will", "batch_id", c.BatchID, "row", c.Row, "error", err)
	}
}

// mend puts back in the schedule the records of a batch whose count ran out
// while some may still be sent (a pick whose claim a crash lost).
func (p *Pipeline) mend(ctx context.Context, pick schedule.Pick) {
	n, err := p.records.eligible(ctx, pick.Batch, p.cfg.lease())
	if err == nil && n > 0 {
		err = p.sched.Add(ctx, pick.Business, 0, pick.Batch, n)
	}
	if err != nil {
		p.logger.WarnContext(ctx, "count what is left of a batch; the reconciler will", "error", err)
	}
}

// call makes the prepared record's Sumsub call and stores its outcome, or
// puts the record back to wait out a retry.
func (p *Pipeline) call(ctx context.Context, c *claimed) error {
	ctx = logging.With(ctx, slog.String("batch_id", c.BatchID.String()), slog.Int("row", c.Row))
	// The record's span is a child of its batch's dispatch, in the upload's
	// trace; the Sumsub request's and the statements' spans are its own.
	span := trace.SpanFromContext(ctx)
	if tracing.Enabled() {
		ctx, span = tracing.StartFrom(ctx, c.Traceparent, "ingest.import_record", trace.WithAttributes(
			attribute.String("kycbatch.batch_id", c.BatchID.String()), attribute.Int("kycbatch.row", c.Row),
			attribute.Int("kycbatch.attempt", c.Attempt)))
		defer span.End()
	}
	level := c.ApplicantLevel
	if level == "" {
		level = p.cfg.DefaultLevel
	}
	callStart := time.Now()
	applicant, err := p.sumsub.ReuseApplicant(ctx, c.ShareToken, level)
	label := callOutcome(err)
	span.SetAttributes(attribute.String("kycbatch.sumsub_outcome", label))
	p.metrics.SumsubCalls.WithLabelValues(label).Inc()
	p.metrics.BusinessCalls.WithLabelValues(c.BusinessID.String()).Inc()
	p.metrics.SumsubDuration.WithLabelValues(label).Observe(time.Since(callStart).Seconds())
	// A condition of Sumsub as a whole opens the circuit; while it is open,
	// no record is charged for it.
	open := p.circuit.Observe(ctx, err)
	if err == nil {
		return p.finish(ctx, c.BatchID, c.Row, c, imported(applicant))
	}

	var se *sumsub.Error
	if !errors.As(err, &se) {
		// The worker stopped mid-call: the attempt stays unanswered, and the
		// record goes back once its lease is over.
		return p.retry(ctx, c, lost, time.Now().Add(p.cfg.lease()))
	}
	switch {
	case se.Kind == sumsub.Permanent:
		o := outcome{Status: "failed", ErrorCode: sumsubCode(se), ErrorMessage: se.Message()}
		// A used token after an attempt whose answer was lost: that attempt
		// may well have imported the applicant, so say we do not know.
		if se.Code == sumsub.CodeInvalidShareToken && c.Attempt-1 > c.Answered {
			o.ErrorCode, o.ErrorMessage = CodeOutcomeUnknown, msgOutcomeUnknown
		}
		return p.finish(ctx, c.BatchID, c.Row, c, o)
	case se.Kind == sumsub.RateLimited:
		return p.rateLimited(ctx, c, se)
	case se.Kind == sumsub.Unauthorized || open && se.HTTPStatus == http.StatusServiceUnavailable:
		// Refused unrun for a reason that is not the record's: not an
		// attempt. The record goes at once, once the circuit closes.
		return p.retry(ctx, c, unrun, time.Now())
	case c.Attempt >= MaxAttempts && !open:
		return p.finish(ctx, c.BatchID, c.Row, c, outcome{Status: "failed", ErrorCode: CodeSumsubUnavailable,
			ErrorMessage: fmt.Sprintf("no answer from Sumsub after %d attempts: %s", c.Attempt, se.Error())})
	}
	p.logger.WarnContext(ctx, "sumsub call failed; will retry", "attempt", c.Attempt, "error", se.Error())
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
	t := toStore{BatchID: batchID, Row: row, Claimed: c, Outcome: o}
	res, err := p.group.store(ctx, t)
	// Retried alone: an outcome PostgreSQL refuses fails no other.
	for delay, deadline := 100*time.Millisecond, time.Now().Add(storeRetry); err != nil && time.Now().Add(delay).Before(deadline); delay = min(2*delay, 2*time.Second) {
		p.logger.WarnContext(ctx, "store the outcome; retrying", "in", delay, "error", err)
		time.Sleep(delay)
		var list []storeResult
		if list, err = p.records.store(ctx, []toStore{t}); err == nil {
			res = list[0]
		}
	}
	if err != nil || !res.Stored {
		return err
	}
	p.metrics.Records.WithLabelValues(o.Status).Inc()
	p.logger.InfoContext(ctx, "record finished", "status", o.Status, "error_code", o.ErrorCode)
	if !res.BatchDone {
		return nil
	}
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
	case se.Kind == sumsub.Unauthorized:
		return "unauthorized"
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

// signal wakes every goroutine waiting on it (a sync.Cond with a context
// and a deadline).
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

// notify wakes the waiters.
func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.ch)
	s.ch = make(chan struct{})
}

// wait waits until notified (true), until deadline, or until ctx ends.
func (s *signal) wait(ctx context.Context, deadline time.Time) bool {
	s.mu.Lock()
	ch := s.ch
	s.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}
