package imports

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/rediskey"
)

// pausePoll is how often a process with record tasks running asks Redis
// whether ops paused the queue: a pause stops its Sumsub calls within about
// this (Asynq itself only stops handing out tasks).
const pausePoll = 100 * time.Millisecond

// pauseWatch tells a process's record tasks whether the sumsub queue is
// paused. It asks Redis only while tasks of the process run, so an idle
// worker costs nothing.
type pauseWatch struct {
	rdb redis.UniversalClient
	key string

	paused  atomic.Bool
	running atomic.Int64 // record tasks of this process running now

	mu       sync.Mutex
	watching bool // a goroutine polls the flag
}

func newPauseWatch(rdb redis.UniversalClient, queue string) *pauseWatch {
	return &pauseWatch{rdb: rdb, key: rediskey.AsynqPaused(queue)}
}

// enter notes that a task of the process runs, until leave is called;
// while any does, the flag is polled. The first task after none ran reads
// the flag itself: the last value seen may be long out of date.
func (w *pauseWatch) enter(ctx context.Context) (leave func()) {
	w.running.Add(1)
	w.mu.Lock()
	if !w.watching {
		w.watching = true
		w.refresh(ctx)
		go w.watch(context.WithoutCancel(ctx))
	}
	w.mu.Unlock()
	return func() { w.running.Add(-1) }
}

// refresh reads the flag from Redis; on an error the last value stays.
func (w *pauseWatch) refresh(ctx context.Context) {
	if n, err := w.rdb.Exists(ctx, w.key).Result(); err == nil {
		w.paused.Store(n == 1)
	}
}

// watch polls the flag while tasks run, then stops.
func (w *pauseWatch) watch(ctx context.Context) {
	for {
		time.Sleep(pausePoll)
		w.refresh(ctx)
		w.mu.Lock()
		if w.running.Load() == 0 {
			w.watching = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// isPaused says whether the queue was paused when last seen.
func (w *pauseWatch) isPaused() bool { return w.paused.Load() }

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

// wait waits until notified (true), for d, or until ctx ends.
func (s *signal) wait(ctx context.Context, d time.Duration) bool {
	s.mu.Lock()
	ch := s.ch
	s.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// ewma is an exponentially weighted moving average of durations, safe for
// concurrent use.
type ewma struct{ bits atomic.Uint64 }

// add takes in a new sample.
func (e *ewma) add(d time.Duration) {
	for {
		old := e.bits.Load()
		v := math.Float64frombits(old)
		v += 0.1 * (d.Seconds() - v)
		if e.bits.CompareAndSwap(old, math.Float64bits(v)) {
			return
		}
	}
}

// get is the average so far (0 before any sample).
func (e *ewma) get() time.Duration {
	return time.Duration(math.Float64frombits(e.bits.Load()) * float64(time.Second))
}
