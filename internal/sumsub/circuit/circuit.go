// Package circuit is the circuit breaker of kycbatch's Sumsub calls, shared
// by every worker process through Redis, so that a condition of Sumsub as a
// whole (an outage, a rotated secret, a clock gone wrong) pauses the calls
// instead of failing the records that happen to be sent.
//
// Two conditions open it: a 401 refusing our signature, our timestamp or our
// app token (one is enough: every request gets it), and transient failures
// (5xx, timeouts, lost connections) on more than half of a process's last
// 20 calls made within 30 s, and at least 5 of them: at 10 requests a
// second, about a second of an outage; a few flaky records (even one call
// in ten failing) never add up to it.
// While it is open no record is sent: one process at a time probes Sumsub
// with a single request, a second after it opened and then at doubling
// intervals up to the longest wait (30 s by default), and the first probe
// answered normally closes it for every process.
//
// Its state in Redis is one hash, absent while the circuit is closed, and
// the probe's lease; times are Redis's clock, so that the workers' own
// clocks (perhaps the very thing that is wrong) decide nothing. A Redis
// flushed closes it: the next failures open it again.
package circuit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/metrics"
	"github.com/kycbatch/kycbatch/internal/rediskey"
	"github.com/kycbatch/kycbatch/internal/sumsub"
)

// The breaker's thresholds.
const (
	// window is how far back a process's last calls count towards opening it.
	window = 30 * time.Second
	// minFailures is the fewest transient failures that open it.
	minFailures = 5
	// firstProbe is the wait from opening to the first probe; each failed
	// probe doubles it, up to the longest wait.
	firstProbe = time.Second
	// DefaultMaxProbeWait is the longest wait between probes by default.
	DefaultMaxProbeWait = 30 * time.Second
	// fresh is how old a process's view of a closed circuit may be before
	// it asks Redis again: records sent after another process opened it
	// are at most this much of the rate.
	fresh = time.Second
)

// Redis keys of the state.
const (
	stateKey = rediskey.Circuit
	probeKey = rediskey.CircuitProbe
)

// Status is the circuit's state as a process last saw it.
type Status struct {
	Open bool
	// Since is when it opened, by Redis's clock.
	Since time.Time
	// Reason is the condition that opened it, e.g. "401 Request signature
	// mismatch" or "transient failures on 9 of 12 calls in 10s".
	Reason string
}

// Breaker is a process's handle on the shared breaker. It is safe for
// concurrent use.
type Breaker struct {
	rdb     redis.UniversalClient
	logger  *slog.Logger
	state   prometheus.Gauge
	opened  prometheus.Counter
	closed  prometheus.Counter
	maxWait time.Duration
	lease   string // this process's probe lease value

	mu       sync.Mutex
	status   Status
	checked  time.Time // when status was read from Redis; zero: never
	openedAt time.Time // when this process last opened it: older reads of Redis cannot close it
	last     [20]call  // the process's last calls, a ring
	next     int       // where in last the next call goes
}

// call is how a call ended, and when.
type call struct {
	at     time.Time // zero: no call
	failed bool
}

// New returns the breaker of the Sumsub calls of a process; maxWait is the
// longest wait between probes (DefaultMaxProbeWait when zero).
func New(rdb redis.UniversalClient, maxWait time.Duration, logger *slog.Logger, m *metrics.Metrics) *Breaker {
	if maxWait <= 0 {
		maxWait = DefaultMaxProbeWait
	}
	return &Breaker{
		rdb: rdb, logger: logger, maxWait: max(maxWait, firstProbe), lease: uuid.NewString(),
		state:  m.SumsubCircuitState,
		opened: m.SumsubCircuitTransitions.WithLabelValues("open"),
		closed: m.SumsubCircuitTransitions.WithLabelValues("closed"),
	}
}

// Allow says whether a record may be sent now: the zero time, or when to ask
// again. While the circuit is open, the caller that finds a probe due and
// takes its lease sends it (probe: one request, its permit included) and
// learns its verdict at once. Allow asks Redis at most once a second while
// the circuit is closed; when Redis cannot say, records go (the limiter
// holds them back then).
func (b *Breaker) Allow(ctx context.Context, probe func(context.Context) error) time.Time {
	b.mu.Lock()
	if !b.status.Open && !b.checked.IsZero() && time.Since(b.checked) < fresh {
		b.mu.Unlock()
		return time.Time{}
	}
	b.mu.Unlock()
	st, due, err := b.ask(ctx)
	if err != nil {
		if ctx.Err() == nil {
			b.logger.WarnContext(ctx, "read the Sumsub circuit's state; sending", "error", err)
		}
		return time.Time{}
	}
	if !st.Open {
		return time.Time{}
	}
	if due == 0 {
		if b.probe(ctx, probe) {
			return time.Time{}
		}
		return time.Now().Add(fresh)
	}
	return time.Now().Add(min(due, fresh))
}

// askScript reads the state and, when a probe is due and nobody holds its
// lease, gives the lease to the caller: {0} when closed, else {1, since ms,
// reason, ms until the probe is due, 0 when the caller holds the lease}.
var askScript = redis.NewScript(`
local c = redis.call('HMGET', KEYS[1], 'since', 'reason', 'probe_at')
if not c[1] then return {0} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = tonumber(c[3]) - now
if due <= 0 then
	if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
		due = 0
	else
		due = 1000
	end
end
return {1, c[1], c[2], due}`)

// probeLease bounds a probe: its permit wait and its call. A prober that
// dies loses the lease after it.
const probeLease = time.Minute

// ask reads the state from Redis, taking the probe's lease when one is due
// (due 0: the caller probes).
func (b *Breaker) ask(ctx context.Context) (Status, time.Duration, error) {
	start := time.Now()
	v, err := askScript.Run(ctx, b.rdb, []string{stateKey, probeKey}, b.lease, probeLease.Milliseconds()).Slice()
	if err != nil {
		return Status{}, 0, fmt.Errorf("circuit: %w", err)
	}
	st, due := Status{}, fresh // due: when closed in Redis but open here (see), ask again soon
	if len(v) == 4 {
		since, _ := strconv.ParseInt(fmt.Sprint(v[1]), 10, 64)
		st = Status{Open: true, Since: time.UnixMilli(since), Reason: fmt.Sprint(v[2])}
		due = time.Duration(v[3].(int64)) * time.Millisecond
	}
	return b.see(st, start), due, nil
}

// Status reads the circuit's state from Redis.
func (b *Breaker) Status(ctx context.Context) (Status, error) {
	start := time.Now()
	v, err := b.rdb.HMGet(ctx, stateKey, "since", "reason").Result()
	if err != nil {
		return Status{}, fmt.Errorf("circuit: %w", err)
	}
	st := Status{}
	if s, ok := v[0].(string); ok {
		since, _ := strconv.ParseInt(s, 10, 64)
		reason, _ := v[1].(string)
		st = Status{Open: true, Since: time.UnixMilli(since), Reason: reason}
	}
	return b.see(st, start), nil
}

// see records the state read from Redis by a read that started at start,
// and returns the state as the process knows it: a read begun before this
// process opened the circuit (its write may not have landed yet) does not
// close it. A circuit found closed after being open starts a fresh count of
// failures.
func (b *Breaker) see(st Status, start time.Time) Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !st.Open && start.Before(b.openedAt) {
		return b.status
	}
	if b.status.Open && !st.Open {
		b.last = [20]call{}
	}
	b.status, b.checked = st, time.Now()
	if st.Open {
		b.state.Set(1)
	} else {
		b.state.Set(0)
	}
	return st
}

// probe sends the probe whose lease the caller holds and hands its verdict
// to Redis; it reports whether the circuit is closed afterwards.
func (b *Breaker) probe(ctx context.Context, probe func(context.Context) error) bool {
	pctx, cancel := context.WithTimeout(ctx, probeLease)
	err := probe(pctx)
	cancel()
	verdict, reason := judge(err)
	if verdict == none {
		// No request was made, or none decided (the worker is stopping):
		// the lease goes back for the next prober.
		b.rdb.Del(context.WithoutCancel(ctx), probeKey)
		return false
	}
	res, rerr := probedScript.Run(context.WithoutCancel(ctx), b.rdb, []string{stateKey, probeKey},
		b.lease, boolInt(verdict == pass), b.maxWait.Milliseconds(), reason).Int64()
	if rerr != nil {
		b.logger.WarnContext(ctx, "store the Sumsub probe's verdict", "error", rerr)
		return false
	}
	switch {
	case res < 0: // the lease ran out: the next prober decides
		return false
	case verdict == pass && res == 1:
		b.see(Status{}, time.Now())
		b.closed.Inc()
		b.logger.WarnContext(ctx, "Sumsub circuit closed: a probe was answered normally; records are sent at the full rate again")
		return true
	case verdict == pass || res == 0: // closed already (by a flush of Redis)
		b.see(Status{}, time.Now())
		return true
	default:
		b.logger.InfoContext(ctx, "Sumsub probe failed; the circuit stays open", "next_probe_in", (time.Duration(res) * time.Millisecond).String(), "error", err)
		b.clockWarning(ctx, err)
		return false
	}
}

// probedScript stores a probe's verdict (ARGV[2] 1: answered normally) if
// the caller still holds the lease: it closes the circuit (1), or doubles
// the wait to the next probe up to ARGV[3] ms and returns it; -1 when the
// lease was lost (the verdict is dropped), 0 when the circuit was closed.
var probedScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[2])
if ARGV[2] == '1' then return redis.call('DEL', KEYS[1]) end
local wait = tonumber(redis.call('HGET', KEYS[1], 'probe_wait'))
if not wait then return 0 end
wait = math.min(2 * wait, tonumber(ARGV[3]))
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'probe_at', t[1] * 1000 + math.floor(t[2] / 1000) + wait, 'probe_wait', wait, 'reason', ARGV[4])
return wait`)

// Observe counts a record's call (err nil: it succeeded) and opens the
// circuit when it says Sumsub as a whole fails; it reports whether the
// circuit is open now, as this process knows. A call refused while it is
// open was sent before the process knew.
func (b *Breaker) Observe(ctx context.Context, err error) (open bool) {
	verdict, reason := judge(err)
	if verdict == none {
		return b.IsOpen()
	}
	b.mu.Lock()
	now := time.Now()
	b.last[b.next] = call{at: now, failed: verdict == fail}
	b.next = (b.next + 1) % len(b.last)
	var calls, failures int
	for _, c := range b.last {
		if !c.at.IsZero() && now.Sub(c.at) < window {
			calls++
			if c.failed {
				failures++
			}
		}
	}
	open = b.status.Open
	b.mu.Unlock()

	var se *sumsub.Error
	provider := errors.As(err, &se) && se.Kind == sumsub.Unauthorized
	if open || verdict == pass || (!provider && (failures < minFailures || 2*failures <= calls)) {
		return open
	}
	if !provider {
		reason = fmt.Sprintf("transient failures on %d of the last %d calls (last: %s)", failures, calls, reason)
	}
	b.open(ctx, reason, err)
	return true
}

// openScript opens the circuit unless it is open: 1 when the caller did.
var openScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSET', KEYS[1], 'since', now, 'reason', ARGV[1], 'probe_at', now + ARGV[2], 'probe_wait', ARGV[2])
return 1`)

// open opens the circuit for every process, logging and counting the
// transition when this call made it.
func (b *Breaker) open(ctx context.Context, reason string, err error) {
	ctx = context.WithoutCancel(ctx)
	b.mu.Lock()
	b.status = Status{Open: true, Since: time.Now(), Reason: reason}
	b.checked, b.openedAt = time.Now(), time.Now()
	b.last = [20]call{}
	b.state.Set(1)
	b.mu.Unlock()
	n, rerr := openScript.Run(ctx, b.rdb, []string{stateKey}, reason, firstProbe.Milliseconds()).Int()
	if rerr != nil {
		b.logger.WarnContext(ctx, "open the Sumsub circuit in Redis; this process pauses alone", "error", rerr)
		return
	}
	if n == 1 {
		b.opened.Inc()
		b.logger.WarnContext(ctx, "Sumsub circuit opened: no record is sent until a probe is answered normally", "reason", reason)
		b.clockWarning(ctx, err)
	}
}

// clockWarning says so when Sumsub refused our timestamp.
func (b *Breaker) clockWarning(ctx context.Context, err error) {
	var se *sumsub.Error
	if !errors.As(err, &se) || !se.TimestampRefused() {
		return
	}
	attrs := []any{"allowed_skew", sumsub.MaxClockSkew.String()}
	if se.ClockOffset != 0 {
		attrs = append(attrs, "clock_ahead_of_sumsub", se.ClockOffset.String())
	}
	b.logger.WarnContext(ctx, "Sumsub refuses this worker's request timestamps: its clock is off by more than Sumsub allows either way; fix the clock (NTP)", attrs...)
}

// IsOpen says whether the circuit is open as this process last saw it,
// without asking Redis: a call about to go checks it after its permit, so
// that the calls waiting for permits when the circuit opened are not sent.
func (b *Breaker) IsOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status.Open
}

// verdict is what a call says of Sumsub as a whole.
type verdict int

const (
	none verdict = iota // nothing: no answer from Sumsub decided (cut short, no permit)
	pass                // Sumsub works: an import, or a refusal of the record itself
	fail                // Sumsub or our credentials fail every call
)

// judge reads a call's error; reason describes a failure.
func judge(err error) (verdict, string) {
	var se *sumsub.Error
	switch {
	case err == nil:
		return pass, ""
	case !errors.As(err, &se):
		return none, ""
	case se.Kind == sumsub.Unauthorized:
		return fail, fmt.Sprintf("%d %s", se.HTTPStatus, se.Message())
	case se.Kind == sumsub.Transient:
		return fail, se.Error()
	default: // the record's own refusal, or the rate limit: Sumsub answers
		return pass, ""
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
