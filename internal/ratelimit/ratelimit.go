// Package ratelimit hands out permits for requests to an external API whose
// limit is shared by every worker process of a deployment (Sumsub allows 10
// requests per second in all, not per process).
//
// Two layers make one permit. The global layer is a GCRA in Redis
// (go-redis/redis_rate): Redis is the only clock and the only state, so N
// processes together never exceed the limit. The local layer is a
// golang.org/x/time/rate limiter in each process: it spaces the process's own
// calls, so that a process with many idle workers does not send them all to
// Redis at once whenever a permit frees up.
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// window is the span over which the downstream server counts requests: it
// allows perSecond requests whose arrival times fall within any window of
// this length, ends included.
const window = time.Second

// margin is how much more than window any perSecond+1 consecutive permits
// span, so that the limit holds in every sliding window even though requests
// reach the server a little after Redis grants their permits, and not all
// equally late. If request i arrives d_i after its grant and the d_i differ by
// up to J, perSecond+1 arrivals span at least window + margin - J, which is
// more than window for any J < margin. Jitter does not add up over a window:
// only the first and the last request's delays matter.
//
// 6 ms covers the milliseconds by which the time between a permit and the
// request's arrival varies (scheduling, the network), and costs 0.6% of the
// rate. The pipeline keeps that time short: a record is chosen, claimed and
// checked before its permit, so that the permit is followed by the request
// alone (with a 10 ms margin, when the choice came after the permit, a
// busy machine still let 429s through). A permit held back longer than that
// (a stalled process) can still make perSecond+1 in a window; the caller's
// handling of 429 and Retry-After covers that rare case.
const margin = 6 * time.Millisecond

// staleGrant is how long a permit's round trip to Redis may take before the
// permit is dropped as too late to use (see Wait).
const staleGrant = margin

// earliness is how long before its theoretical arrival time (TAT) a permit
// may be granted: the GCRA's tolerance.
//
// redis_rate's GCRA with Rate R per Period and Burst 1 grants a request only
// once Redis's clock has reached the TAT, and then moves the TAT to
// max(TAT, now) + T, with T = Period/R. Any time between the TAT and the next
// request is lost for good, and a waiter refused until the TAT comes back a
// little after it: a round trip, a timer's lateness and the retry jitter.
// Measured in this package's tests, that cost 1.5% of the rate at 10/s with
// one process and 2.4% at 50/s with three, on top of the margin's cost: too
// much, since the limiter must deliver 99% of R (a 5,000-record batch in
// 505 s at 10/s).
//
// With a tolerance τ, a request is granted from TAT - τ on and the TAT still
// moves by T, so a waiter that comes back between TAT - τ and the TAT loses
// nothing: Redis tells it to come back at TAT - τ, and τ exceeds the retry
// jitter and a timer's lateness. The price is that grants may run τ ahead of
// the schedule: k+1 consecutive grants span at least k·T - τ rather than k·T.
// The period pays for it: with R·T - τ = window + margin, perSecond+1 grants
// still span window + margin, and the rate is R/(window + margin + τ),
// 99.1% of R with a 6 ms margin and 3 ms of tolerance, whenever someone is
// waiting, however many processes and waiters there are.
//
// A tolerance that is not a whole number of emission intervals takes
// redis_rate's cost units: each permit costs units sub-permits, Rate counts
// sub-permits, and Burst adds τ's worth of them (see gcraLimit).
const earliness = 3 * time.Millisecond

// units is the number of GCRA sub-permits one permit costs; the tolerance is
// rounded up to a whole number of them, which a thousand makes fine enough.
const units = 1000

// maxJitter bounds the random delay added to each retry, so that waiters
// refused for the same TAT do not all reach Redis at the same instant; it
// stays under the tolerance, so that a waiter back a little late loses nothing.
const maxJitter = time.Millisecond

// Limiter hands out permits for requests to one external API. It is safe for
// concurrent use; every process of a deployment builds its own on the same
// Redis and key, and together they keep the limit.
type Limiter struct {
	// gcra decides, in Redis, whether a permit is free now.
	gcra *redis_rate.Limiter
	// key names the limit in Redis.
	key string
	// limit is the GCRA, in sub-permits (see gcraLimit).
	limit redis_rate.Limit
	// local spaces this process's requests to Redis. At perSecond it runs a
	// hair faster than the GCRA, so it never is what holds a process back.
	local *rate.Limiter
}

// New returns a limiter allowing perSecond requests per second in all, across
// every process using the same Redis and key. key names the limit in Redis
// (e.g. "sumsub"). It panics if perSecond is not positive, because a limiter
// that never grants (or always grants) is a programming error, not a state to
// handle at run time.
func New(rdb redis.UniversalClient, key string, perSecond int) *Limiter {
	if perSecond <= 0 {
		panic(fmt.Sprintf("ratelimit: perSecond must be positive, got %d", perSecond))
	}
	return &Limiter{
		gcra:  redis_rate.NewLimiter(rdb),
		key:   key,
		limit: gcraLimit(perSecond),
		local: rate.NewLimiter(rate.Limit(perSecond), 1),
	}
}

// WaitTooLongError is returned by Wait when a permit would come later than the
// caller is willing to wait. A task queue treats it as "try again later", not
// as a failure, and uses RetryAfter as the delay.
type WaitTooLongError struct {
	// RetryAfter is how long until a permit is likely to be free.
	RetryAfter time.Duration
}

// Error reports how long the caller would have had to wait.
func (e *WaitTooLongError) Error() string {
	return fmt.Sprintf("rate limited: next permit in about %s", e.RetryAfter)
}

// Wait blocks until a permit is granted or until the wait would exceed
// maxWait; then it returns a *WaitTooLongError carrying RetryAfter, without
// consuming a global permit, so that a worker is not held for long and the
// task is retried when a permit is likely. (When Redis is what refuses, this
// process's local slot is spent: x/time/rate cannot take a slot back once its
// time has come, and the next one is at most 1/perSecond away.) If ctx is done
// first, Wait returns ctx.Err(). A Redis failure is returned wrapped: Wait
// never grants a permit that Redis did not.
func (l *Limiter) Wait(ctx context.Context, maxWait time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline := time.Now().Add(maxWait)
	if err := l.waitLocal(ctx, deadline); err != nil {
		return err
	}
	dropped := false
	for {
		sent := time.Now()
		res, err := l.gcra.AllowN(ctx, l.key, l.limit, units)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("ask Redis for a %q permit: %w", l.key, err)
		}
		if res.Allowed > 0 {
			// A grant whose answer took longer than the margin to reach
			// us (a busy Redis, or this goroutine not scheduled) is
			// already late: sent now, its request could arrive past
			// the margin and meet a 429. The first such grant is
			// dropped, unused, and the next one taken; only one, so that
			// a machine too busy for any grant to be on time still
			// makes progress.
			if dropped || time.Since(sent) <= staleGrant {
				return nil
			}
			dropped = true
			continue
		}
		// Redis measured RetryAfter from when it ran the script, after
		// sent; counting from sent rather than from now keeps the round
		// trip from eating into the tolerance. Coming back a little early
		// costs only one more refusal.
		free := sent.Add(res.RetryAfter)
		if free.After(deadline) {
			return &WaitTooLongError{RetryAfter: res.RetryAfter}
		}
		wake := free.Add(rand.N(maxJitter))
		if wake.After(deadline) {
			wake = deadline
		}
		if err := sleep(ctx, time.Until(wake)); err != nil {
			return err
		}
	}
}

// gcraLimit returns the redis_rate limit that grants perSecond permits per
// window + margin + earliness, each up to earliness ahead of its TAT, for
// permits that cost units sub-permits each (see earliness).
//
// In redis_rate's script the emission interval of a sub-permit is
// e = Period/Rate; a permit of n = units sub-permits moves the TAT by n·e and
// is granted once now ≥ TAT + n·e - Burst·e. With Rate = R·units and
// Burst = units + slack, that is T = Period/R per permit and a tolerance
// τ = slack·T/units. slack is the fewest sub-permits making τ ≥ earliness,
// and Period solves R·T - τ = window + margin:
// Period·(R·units - slack)/(R·units) = window + margin.
func gcraLimit(perSecond int) redis_rate.Limit {
	subPerSecond := float64(perSecond * units)
	slack := int(math.Ceil(float64(earliness) * subPerSecond / float64(window+margin)))
	period := math.Ceil(float64(window+margin) * subPerSecond / (subPerSecond - float64(slack)))
	return redis_rate.Limit{Rate: perSecond * units, Period: time.Duration(period), Burst: units + slack}
}

// waitLocal waits for this process's next slot, or returns a
// *WaitTooLongError, handing the slot back, if it comes after deadline.
func (l *Limiter) waitLocal(ctx context.Context, deadline time.Time) error {
	now := time.Now()
	// With burst 1 a reservation of one token always succeeds; only its
	// delay varies.
	r := l.local.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if now.Add(delay).After(deadline) {
		r.CancelAt(now)
		return &WaitTooLongError{RetryAfter: delay}
	}
	if err := sleep(ctx, delay); err != nil {
		r.Cancel()
		return err
	}
	return nil
}

// sleep waits for d or until ctx is done, whichever comes first, and returns
// ctx.Err() in the second case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
