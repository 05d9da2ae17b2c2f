package circuit_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/metrics"
	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/sumsub/circuit"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
)

var (
	unavailable = &sumsub.Error{Kind: sumsub.Transient, HTTPStatus: 503}
	usedToken   = &sumsub.Error{Kind: sumsub.Permanent, HTTPStatus: 400, Code: sumsub.CodeInvalidShareToken}
	mismatch    = &sumsub.Error{Kind: sumsub.Unauthorized, HTTPStatus: 401, Description: "Request signature mismatch"}
)

func newBreaker(t *testing.T, rdb redis.UniversalClient) *circuit.Breaker {
	t.Helper()
	return circuit.New(rdb, 2*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.New())
}

// TestOpensOnMostFailures: transient failures open the circuit once they
// are at least 5 and more than half of the last 20 calls; a record's own
// refusals count as answers, and a 401 for our credentials opens it alone.
func TestOpensOnMostFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name  string
		calls []error
		open  bool
	}{
		{"four failures alone", []error{unavailable, unavailable, unavailable, unavailable}, false},
		{"five of eight", []error{nil, nil, nil, unavailable, unavailable, unavailable, unavailable, unavailable}, true},
		{"ten of twenty after a healthy run", append(repeat(nil, 30), repeat(unavailable, 10)...), false},
		{"eleven of twenty after a healthy run", append(repeat(nil, 30), repeat(unavailable, 11)...), true},
		{"one in ten failing", repeat10(200), false},
		{"refusals of records are answers", append(repeat(usedToken, 10), repeat(unavailable, 9)...), false},
		{"a signature mismatch", []error{nil, nil, mismatch}, true},
	}
	// One Redis database for all (the test server has 15 for every package
	// at once), emptied before each case.
	rdb := redistest.Client(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := rdb.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			b := newBreaker(t, rdb)
			open := false
			for _, err := range tt.calls {
				open = b.Observe(ctx, err)
			}
			st, err := b.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if open != tt.open || st.Open != tt.open {
				t.Errorf("open %v (Redis: %v, %q), want %v", open, st.Open, st.Reason, tt.open)
			}
		})
	}
}

func repeat(err error, n int) []error {
	list := make([]error, n)
	for i := range list {
		list[i] = err
	}
	return list
}

// repeat10 is n calls of which every tenth failed.
func repeat10(n int) []error {
	list := make([]error, n)
	for i := 9; i < n; i += 10 {
		list[i] = unavailable
	}
	return list
}

// TestProbes: while the circuit is open, nothing is allowed; one of two
// processes probes at a time, 1 s after opening, then at doubling
// intervals up to the longest wait; the first probe answered closes it for
// both, and Allow lets records go again.
func TestProbes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Client(t)
	a, b := newBreaker(t, rdb), newBreaker(t, rdb)
	a.Observe(ctx, mismatch)

	var probes, concurrent, most atomic.Int32
	var failing atomic.Bool
	failing.Store(true)
	probe := func(context.Context) error {
		probes.Add(1)
		n := concurrent.Add(1)
		defer concurrent.Add(-1)
		if n > most.Load() {
			most.Store(n)
		}
		time.Sleep(50 * time.Millisecond)
		if failing.Load() {
			return unavailable
		}
		return nil
	}
	start := time.Now()
	if until := b.Allow(ctx, probe); until.IsZero() {
		t.Fatal("b: allowed while the circuit is open")
	}
	// Both ask often for 4.5 s: probes due at 1, 3 (1 + 2), 5 (+2, the longest wait) s.
	run := func(br *circuit.Breaker) {
		for time.Since(start) < 4500*time.Millisecond {
			if !br.Allow(ctx, probe).IsZero() {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	done := make(chan struct{})
	go func() { run(a); close(done) }()
	run(b)
	<-done
	if n := probes.Load(); n != 2 || most.Load() != 1 {
		t.Errorf("%d probes in 4.5 s, %d at once: want 2 (at 1 and 3 s), one at a time", n, most.Load())
	}

	failing.Store(false)
	for time.Since(start) < 7*time.Second {
		if a.Allow(ctx, probe).IsZero() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, err := b.Status(ctx); err != nil || st.Open {
		t.Errorf("after a probe passed: open %v %v", st.Open, err)
	}
	if !b.Allow(ctx, probe).IsZero() {
		t.Error("b: not allowed once the circuit closed")
	}
	if probes.Load() != 3 {
		t.Errorf("%d probes, want 3", probes.Load())
	}
}

// TestNoVerdict: a probe that made no request (no permit, the worker
// stopping) decides nothing and hands the lease back.
func TestNoVerdict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBreaker(t, redistest.Client(t))
	b.Observe(ctx, mismatch)
	time.Sleep(1100 * time.Millisecond)
	var probes int
	noPermit := func(context.Context) error { probes++; return errors.New("no permit") }
	b.Allow(ctx, noPermit)
	b.Allow(ctx, noPermit)
	if probes != 2 {
		t.Errorf("%d probes, want 2: a probe without a verdict leaves the next one due", probes)
	}
}
