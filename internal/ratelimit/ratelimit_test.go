package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// These tests assert what the limiter must do, not how fast it does it, so
// that they hold on a loaded machine with the race detector: a scheduling
// delay can make a check more lenient, never make it fail. How much of the
// limit the limiter actually uses, and that Sumsub answers no request with
// 429, is measured by BenchmarkRateUse (cmd/worker), in `make bench`.

// redisAddr is the Redis server of the tests.
const redisAddr = "127.0.0.1:6379"

// newClient returns a client of the test Redis, as one worker process would
// have, skipping the test when Redis is not running outside CI.
func newClient(tb testing.TB) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	tb.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		if os.Getenv("CI") == "" {
			tb.Skipf("Redis not reachable at %s: %v", redisAddr, err)
		}
		tb.Fatalf("Redis not reachable at %s: %v", redisAddr, err)
	}
	return rdb
}

// newKey returns a limit key no other test uses, and deletes the limit's
// state from Redis when the test ends.
func newKey(tb testing.TB, rdb *redis.Client) string {
	tb.Helper()
	key := fmt.Sprintf("test:%s:%016x", tb.Name(), rand.Uint64())
	tb.Cleanup(func() {
		if err := redis_rate.NewLimiter(rdb).Reset(context.Background(), key); err != nil {
			tb.Errorf("delete limit %s: %v", key, err)
		}
	})
	return key
}

// mustWait takes a permit, failing the test if none comes within 30 seconds:
// long enough for a grant dropped as late (see Wait) and the next one, at the
// slowest limit these tests use (one permit in 10 seconds), on a busy machine.
func mustWait(tb testing.TB, l *Limiter) {
	tb.Helper()
	if err := l.Wait(context.Background(), 30*time.Second); err != nil {
		tb.Fatalf("Wait: %v", err)
	}
}

// newSlowLimiter returns a limiter that works as New's does but grants one
// permit every interval, without tolerance. New cannot go below one permit a
// second; the tests of cancellation use it to put the next permit so far away
// that no scheduling delay can be mistaken for a Wait that ignored its
// context.
func newSlowLimiter(rdb *redis.Client, key string, interval time.Duration) *Limiter {
	return &Limiter{
		gcra:  redis_rate.NewLimiter(rdb),
		key:   key,
		limit: redis_rate.Limit{Rate: units, Period: interval, Burst: units},
		local: rate.NewLimiter(rate.Every(interval), 1),
	}
}

// grant is one permit Redis granted, placed on Redis's clock: the GCRA script
// read the time it decided by somewhere from earliest to latest, both
// included.
type grant struct {
	earliest, latest time.Time
}

// grantLog collects the permits Redis grants through the clients that
// watchGrants watches, dropped ones (see Wait) included: a dropped permit was
// still granted, and still counts against the limit.
type grantLog struct {
	mu     sync.Mutex
	grants []grant
}

func (g *grantLog) add(gr grant) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.grants = append(g.grants, gr)
}

// count returns how many permits have been granted so far.
func (g *grantLog) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.grants)
}

// all returns the permits granted so far, by earliest.
func (g *grantLog) all() []grant {
	g.mu.Lock()
	defer g.mu.Unlock()
	grants := slices.Clone(g.grants)
	slices.SortFunc(grants, func(a, b grant) int { return a.earliest.Compare(b.earliest) })
	return grants
}

// watchGrants makes rdb record in log every permit Redis grants through it.
//
// Timestamps taken in the test process, even just before a command is sent
// and just after its reply arrives, are as far from Redis's decision as the
// machine is busy. So the hook instead sends each of the limiter's script
// calls inside a MULTI/EXEC, between two TIME commands: Redis runs the three
// back to back, and the script decides by Redis's TIME, so the GCRA's "now"
// lies between the two answers, which a loaded machine leaves well under a
// millisecond apart. A descheduled Redis only widens the interval, which
// makes the checks on it more lenient, never stricter. The limiter's own code is unchanged; its
// round trip grows by two TIME commands.
func watchGrants(rdb *redis.Client, log *grantLog) {
	rdb.AddHook(grantHook{rdb: rdb, log: log})
}

// grantHook is the redis.Hook of watchGrants.
type grantHook struct {
	rdb *redis.Client
	log *grantLog
}

func (grantHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (grantHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h grantHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		// redis_rate runs its script with EVALSHA, and with EVAL when
		// Redis does not know the script yet; nothing else is watched.
		script, ok := cmd.(*redis.Cmd)
		if !ok || (cmd.Name() != "evalsha" && cmd.Name() != "eval") {
			return next(ctx, cmd)
		}
		var before, after *redis.TimeCmd
		_, err := h.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			before = p.Time(ctx)
			if err := p.Process(ctx, cmd); err != nil {
				return err
			}
			after = p.Time(ctx)
			return nil
		})
		if cmd.Err() == nil && err != nil {
			cmd.SetErr(err)
		}
		if err := cmd.Err(); err != nil {
			return err
		}
		// redis_rate's reply starts with the number of sub-permits
		// granted, 0 when Redis refuses.
		reply, err := script.Slice()
		if err != nil || len(reply) == 0 {
			return nil
		}
		if allowed, _ := reply[0].(int64); allowed > 0 && before.Err() == nil && after.Err() == nil {
			h.log.add(grant{earliest: before.Val(), latest: after.Val()})
		}
		return nil
	}
}

// mostCertainlyWithin returns the largest number of grants that some closed
// window of length w certainly holds, whatever the instants at which Redis
// made them within their intervals, and where that window starts.
//
// A window [s, s+w] certainly holds a grant when it holds its whole interval.
// Windows starting at some grant's earliest are enough: if [s, s+w] holds a
// set of intervals whole, so does the window starting at the smallest
// earliest among them, which starts no earlier than s and so ends no earlier
// than s+w. A wider interval fits in fewer windows, so imprecise timestamps
// can only lower the result; it exceeds the limit only if Redis certainly
// granted too much.
func mostCertainlyWithin(grants []grant, w time.Duration) (most int, start time.Time) {
	for _, g := range grants {
		s, e := g.earliest, g.earliest.Add(w)
		n := 0
		for _, h := range grants {
			if !h.earliest.Before(s) && !h.latest.After(e) {
				n++
			}
		}
		if n > most {
			most, start = n, s
		}
	}
	return most, start
}

// tightestSpan returns the shortest time that k consecutive sorted times
// span. The closed window of length w starting at times[i] holds more than
// k-1 of them exactly when times[i+k-1] is at most w after times[i], so every
// such window holds at most k-1 times exactly when the result exceeds w; and
// by how much tells how much jitter the limit would still absorb.
func tightestSpan(times []time.Time, k int) time.Duration {
	tightest := time.Duration(math.MaxInt64)
	for i := 0; i+k-1 < len(times); i++ {
		tightest = min(tightest, times[i+k-1].Sub(times[i]))
	}
	return tightest
}

func TestGCRALimit(t *testing.T) {
	for _, perSecond := range []int{1, 10, 50, 1000} {
		t.Run(fmt.Sprint(perSecond), func(t *testing.T) {
			limit := gcraLimit(perSecond)
			// The interval between permits and the tolerance, as
			// redis_rate's script computes them.
			interval := float64(limit.Period) / float64(perSecond)
			tolerance := float64(limit.Period) * float64(limit.Burst-units) / float64(limit.Rate)

			if tolerance < float64(earliness) {
				t.Errorf("tolerance %s, want at least %s", time.Duration(tolerance), earliness)
			}
			span := float64(perSecond)*interval - tolerance
			if span < float64(window+margin) || span > float64(window+margin)+float64(time.Microsecond) {
				t.Errorf("%d+1 permits span at least %s, want %s", perSecond, time.Duration(span), window+margin)
			}
			if got, want := 1/interval*float64(time.Second), 0.98*float64(perSecond); got < want {
				t.Errorf("rate %.3f/s, want at least %.3f/s", got, want)
			}
		})
	}
}

func TestWaitKeepsLimitAcrossProcesses(t *testing.T) {
	tests := []struct {
		name       string
		perSecond  int
		processes  int
		goroutines int // per process
		// permits is how many permits the run takes, about three seconds'
		// worth: however slowly a busy machine gets there, the checks see
		// the same number of windows.
		permits int
	}{
		{name: "three processes", perSecond: 50, processes: 3, goroutines: 9, permits: 150},
		{name: "one process", perSecond: 10, processes: 1, goroutines: 4, permits: 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := newKey(t, newClient(t))
			// The minute only stops a limiter that no longer grants
			// anything; the run ends when it has its permits.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			var (
				log      grantLog
				calls    atomic.Int64 // Wait calls
				returned atomic.Int64 // Wait calls that returned a permit
				wg       sync.WaitGroup
			)
			for range tt.processes {
				rdb := newClient(t)
				watchGrants(rdb, &log)
				l := New(rdb, key, tt.perSecond)
				for range tt.goroutines {
					wg.Go(func() {
						for ctx.Err() == nil {
							calls.Add(1)
							err := l.Wait(ctx, 10*time.Second)
							if err == nil {
								if returned.Add(1) >= int64(tt.permits) {
									cancel()
								}
								continue
							}
							if ctx.Err() == nil {
								t.Errorf("Wait: %v", err)
							}
							return
						}
					})
				}
			}
			wg.Wait()

			grants := log.all()
			got := int(returned.Load())
			if got < tt.permits {
				t.Fatalf("Wait returned %d permits in a minute, want %d: the limiter stopped granting", got, tt.permits)
			}
			// Every permit Wait returns is one Redis granted, and Wait
			// drops at most one grant per call (see staleGrant).
			if len(grants) < got {
				t.Errorf("Redis granted %d permits but Wait returned %d: Wait handed out permits Redis did not grant", len(grants), got)
			}
			if n := calls.Load(); int64(len(grants)) > 2*n {
				t.Errorf("Redis granted %d permits to %d Wait calls, want at most 2 per call", len(grants), n)
			}

			// The limit, in Redis's clock, where the GCRA keeps it and no
			// scheduling delay blurs it (see watchGrants). The first check
			// is the downstream server's rule: at most perSecond requests
			// in any closed window of one second. The second is the
			// limiter's promise that perSecond+1 permits span at least
			// window + margin (see margin), without which delays between
			// a permit and its request would let a 429 through; half the
			// margin is left for floating-point rounding in Redis. These
			// windows also bound the total number of permits of the run,
			// so no separate upper bound on the rate is needed.
			for _, w := range []time.Duration{window, window + margin/2} {
				if most, start := mostCertainlyWithin(grants, w); most > tt.perSecond {
					t.Errorf("Redis certainly granted %d permits within the %s from %s, want at most %d",
						most, w, start.Format("15:04:05.000000"), tt.perSecond)
				}
			}

			// The achieved rate is only logged: it drops on a busy machine
			// (more late grants are dropped) without the limiter being wrong.
			// BenchmarkRateUse (cmd/worker) measures the real figure.
			mid := make([]time.Time, len(grants))
			widest := time.Duration(0)
			for i, g := range grants {
				width := g.latest.Sub(g.earliest)
				mid[i] = g.earliest.Add(width / 2)
				widest = max(widest, width)
			}
			slices.SortFunc(mid, time.Time.Compare)
			span := mid[len(mid)-1].Sub(mid[0])
			achieved := float64(len(mid)-1) / span.Seconds()
			t.Logf("Redis granted %d permits (%d dropped as late) in %s: %.2f/s (%.1f%% of %d/s); "+
				"%d consecutive permits span at least %s; grants located within %s",
				len(grants), len(grants)-got, span.Round(time.Millisecond), achieved,
				100*achieved/float64(tt.perSecond), tt.perSecond,
				tt.perSecond+1, tightestSpan(mid, tt.perSecond+1).Round(10*time.Microsecond), widest)
		})
	}
}

func TestWaitTooLongConsumesNoPermit(t *testing.T) {
	// One permit a second: the refused Wait below comes right after a
	// permit, and a whole second of descheduling would be needed for it to
	// find the next one free.
	const perSecond = 1
	interval := time.Duration(float64(gcraLimit(perSecond).Period) / perSecond)
	tests := []struct {
		name string
		// otherProcess makes the refused waiter a second limiter, so that
		// Redis refuses it rather than its own process's spacing.
		otherProcess bool
	}{
		{name: "same process"},
		{name: "other process", otherProcess: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log grantLog
			rdb := newClient(t)
			watchGrants(rdb, &log)
			key := newKey(t, rdb)
			first := New(rdb, key, perSecond)
			waiter := first
			if tt.otherProcess {
				other := newClient(t)
				watchGrants(other, &log)
				waiter = New(other, key, perSecond)
			}
			mustWait(t, first)

			granted := log.count()
			before := time.Now()
			tokensBefore := waiter.local.TokensAt(before)
			err := waiter.Wait(context.Background(), 10*time.Millisecond)
			after := time.Now()
			tokensAfter := waiter.local.TokensAt(after)
			var tooLong *WaitTooLongError
			if !errors.As(err, &tooLong) {
				t.Fatalf("Wait on an exhausted limit = %v, want a *WaitTooLongError", err)
			}
			if tooLong.RetryAfter <= 0 || tooLong.RetryAfter > interval {
				t.Errorf("RetryAfter = %s, want in (0, %s]", tooLong.RetryAfter, interval)
			}
			// The global permit: Redis granted nothing to the refused
			// call. This is read from Redis's answers, not timed.
			if n := log.count() - granted; n != 0 {
				t.Errorf("Redis granted %d permits to the refused Wait, want none", n)
			}
			// The process's own slot: refused before it reached Redis,
			// the call hands it back, so the local limiter holds what it
			// would have held had the call not been made, the tokens that
			// accrued meanwhile included. (When Redis refuses, the slot is
			// spent; see Wait.) Once a whole token has accrued the
			// limiter is full either way, and there is nothing to tell.
			if want := tokensBefore + after.Sub(before).Seconds()*perSecond; !tt.otherProcess && want < 1 {
				if math.Abs(tokensAfter-want) > 0.5 {
					t.Errorf("the process's limiter holds %.3f tokens after the refused Wait, want %.3f: the slot was not handed back",
						tokensAfter, want)
				}
			}

			// The refusal leaves the limiter working: the next Wait gets
			// its permit, however late a busy machine lets it ask.
			start := time.Now()
			if err := waiter.Wait(context.Background(), 10*time.Second); err != nil {
				t.Fatalf("Wait after the refusal = %v, want a permit", err)
			}
			t.Logf("RetryAfter %s; the next permit came %s after the refusal",
				tooLong.RetryAfter, time.Since(start).Round(time.Microsecond))
		})
	}
}

func TestWaitContextDone(t *testing.T) {
	// One permit in 10 seconds: a Wait that ignored its context would
	// return about that long after the call, a Wait that heeds it a few
	// milliseconds after the context ends; half the interval between them
	// tells the two apart with seconds to spare for a descheduled process.
	const interval = 10 * time.Second
	tests := []struct {
		name string
		// exhaust takes the only permit of the coming interval first.
		exhaust bool
		// otherProcess makes the waiter a second limiter, so that it waits
		// in its Redis retries rather than for its own process's spacing.
		otherProcess bool
		// newContext returns the context of the waiter.
		newContext func() (context.Context, context.CancelFunc)
		want       error
	}{
		{
			name: "cancelled before the call",
			newContext: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			want: context.Canceled,
		},
		{
			name:    "cancelled while waiting for the process's slot",
			exhaust: true,
			newContext: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(20*time.Millisecond, cancel)
				return ctx, cancel
			},
			want: context.Canceled,
		},
		{
			name:         "deadline while waiting for Redis",
			exhaust:      true,
			otherProcess: true,
			newContext: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 20*time.Millisecond)
			},
			want: context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := newClient(t)
			key := newKey(t, rdb)
			first := newSlowLimiter(rdb, key, interval)
			waiter := first
			if tt.otherProcess {
				waiter = newSlowLimiter(newClient(t), key, interval)
			}
			if tt.exhaust {
				mustWait(t, first)
			}

			ctx, cancel := tt.newContext()
			defer cancel()
			start := time.Now()
			// maxWait exceeds the interval, so that Wait waits for the
			// permit rather than refusing at once.
			err := waiter.Wait(ctx, 2*interval)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Wait = %v, want %v", err, tt.want)
			}
			if took := time.Since(start); took > interval/2 {
				t.Errorf("Wait returned %s after the call, want soon after the context ended, not when the permit came", took)
			}
		})
	}
}

func TestWaitRedisDown(t *testing.T) {
	// Nothing listens on port 1; no retries keep the test short.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	l := New(rdb, "test:"+t.Name(), 10)

	err := l.Wait(context.Background(), time.Second)
	var tooLong *WaitTooLongError
	if err == nil || errors.As(err, &tooLong) {
		t.Fatalf("Wait with Redis down = %v, want a Redis error", err)
	}
	t.Logf("Wait with Redis down: %v", err)
}

func TestNewRejectsNonPositiveRate(t *testing.T) {
	for _, perSecond := range []int{0, -1} {
		t.Run(fmt.Sprint(perSecond), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("New(perSecond=%d) did not panic", perSecond)
				}
			}()
			New(nil, "test", perSecond)
		})
	}
}
