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
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

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

// mustWait takes a permit, failing the test if none comes within a second.
func mustWait(tb testing.TB, l *Limiter) {
	tb.Helper()
	if err := l.Wait(context.Background(), time.Second); err != nil {
		tb.Fatalf("Wait: %v", err)
	}
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
		duration   time.Duration
	}{
		{name: "three processes", perSecond: 50, processes: 3, goroutines: 9, duration: 3 * time.Second},
		// 4 s: one grant dropped as late (see Wait) costs a tenth of a second's
		// permits at 10/s, which a shorter run would count as a slow limiter.
		{name: "one process", perSecond: 10, processes: 1, goroutines: 4, duration: 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := newKey(t, newClient(t))
			ctx, cancel := context.WithTimeout(context.Background(), tt.duration)
			defer cancel()

			var (
				mu     sync.Mutex
				grants []time.Time
				wg     sync.WaitGroup
			)
			for range tt.processes {
				l := New(newClient(t), key, tt.perSecond)
				for range tt.goroutines {
					wg.Go(func() {
						for {
							err := l.Wait(ctx, 10*time.Second)
							if err != nil {
								if ctx.Err() == nil {
									t.Errorf("Wait: %v", err)
								}
								return
							}
							now := time.Now()
							mu.Lock()
							grants = append(grants, now)
							mu.Unlock()
						}
					})
				}
			}
			wg.Wait()

			slices.SortFunc(grants, time.Time.Compare)
			if len(grants) < 2 {
				t.Fatalf("got %d permits in %s, want many", len(grants), tt.duration)
			}
			tightest := tightestSpan(grants, tt.perSecond+1)
			span := grants[len(grants)-1].Sub(grants[0])
			achieved := float64(len(grants)-1) / span.Seconds()
			t.Logf("%d permits in %s: %.2f/s (%.1f%% of %d/s); %d consecutive permits span at least %s",
				len(grants), span.Round(time.Millisecond), achieved,
				100*achieved/float64(tt.perSecond), tt.perSecond, tt.perSecond+1, tightest.Round(10*time.Microsecond))
			// Grants are timestamped when Wait returns, after a scheduling delay
			// that on a loaded 2-core machine reaches the limiter's own margin;
			// the check allows the timestamps that much jitter.
			if tightest <= time.Second-margin/2 {
				t.Errorf("%d permits within %s, want at most %d in any 1-second window", tt.perSecond+1, tightest, tt.perSecond)
			}
			// The limiter gives 98.5% of the rate (see margin); the floor leaves
			// room for a loaded CI machine. BenchmarkRateUse (cmd/worker) measures the real figure.
			if want := 0.95 * float64(tt.perSecond); achieved < want {
				t.Errorf("achieved %.2f permits/s, want at least %.2f", achieved, want)
			}
		})
	}
}

func TestWaitTooLongConsumesNoPermit(t *testing.T) {
	const perSecond = 10
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
			rdb := newClient(t)
			key := newKey(t, rdb)
			first := New(rdb, key, perSecond)
			waiter := first
			if tt.otherProcess {
				waiter = New(newClient(t), key, perSecond)
			}
			mustWait(t, first)

			err := waiter.Wait(context.Background(), 10*time.Millisecond)
			var tooLong *WaitTooLongError
			if !errors.As(err, &tooLong) {
				t.Fatalf("Wait on an exhausted limit = %v, want a *WaitTooLongError", err)
			}
			if tooLong.RetryAfter <= 0 || tooLong.RetryAfter > time.Second {
				t.Fatalf("RetryAfter = %s, want in (0, 1s]", tooLong.RetryAfter)
			}

			// Had the refused Wait taken a permit, the next one would be a
			// whole emission interval (100 ms) away, beyond this maxWait.
			time.Sleep(tooLong.RetryAfter)
			start := time.Now()
			if err := waiter.Wait(context.Background(), 50*time.Millisecond); err != nil {
				t.Fatalf("Wait after RetryAfter (%s) = %v, want a permit at once", tooLong.RetryAfter, err)
			}
			t.Logf("RetryAfter %s; the next permit came %s after it",
				tooLong.RetryAfter, time.Since(start).Round(time.Microsecond))
		})
	}
}

func TestWaitContextDone(t *testing.T) {
	tests := []struct {
		name string
		// exhaust takes the only permit of the coming second first.
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
			first := New(rdb, key, 1)
			waiter := first
			if tt.otherProcess {
				waiter = New(newClient(t), key, 1)
			}
			if tt.exhaust {
				mustWait(t, first)
			}

			ctx, cancel := tt.newContext()
			defer cancel()
			start := time.Now()
			err := waiter.Wait(ctx, 5*time.Second)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Wait = %v, want %v", err, tt.want)
			}
			if took := time.Since(start); took > 500*time.Millisecond {
				t.Errorf("Wait returned %s after the call, want soon after the context ended", took)
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
