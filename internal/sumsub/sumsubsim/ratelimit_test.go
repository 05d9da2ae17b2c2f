package sumsubsim_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
)

func TestRateLimitUnderLoad(t *testing.T) {
	t.Parallel()
	const limit = 20
	clk := newClock(start) // frozen: every request falls in the same second
	sim, url := newSim(t, sumsubsim.Config{RateLimit: limit, Now: clk.Now})
	c := newClient(url, clk.Now)

	applicants := make([]sumsub.Applicant, 3*limit)
	errs := make([]error, 3*limit)
	var wg sync.WaitGroup
	for i := range 3 * limit {
		wg.Go(func() {
			applicants[i], errs[i] = c.ReuseApplicant(t.Context(), "tok-"+strconv.Itoa(i), "")
		})
	}
	wg.Wait()
	counts := map[outcome]int{}
	for i := range applicants {
		counts[summarize(t, applicants[i], errs[i])]++
	}
	if diff := cmp.Diff(map[outcome]int{green: limit, rateLimited: 2 * limit}, counts); diff != "" {
		t.Errorf("outcomes mismatch (-want +got):\n%s", diff)
	}
	want := sumsubsim.Stats{Requests: 3 * limit, SuccessfulImports: limit, Rejected429: 2 * limit, MaxRequestsInAnySecond: limit}
	if diff := cmp.Diff(want, sim.Stats()); diff != "" {
		t.Errorf("stats mismatch (-want +got):\n%s", diff)
	}

	// A second later the window is empty again.
	clk.Add(time.Second)
	a, err := c.ReuseApplicant(t.Context(), "tok-next-second", "")
	if diff := cmp.Diff(green, summarize(t, a, err)); diff != "" {
		t.Errorf("outcome a second later mismatch (-want +got):\n%s", diff)
	}
}

func TestRateWindowSlides(t *testing.T) {
	t.Parallel()
	clk := newClock(start)
	sim, url := newSim(t, sumsubsim.Config{RateLimit: 3, Now: clk.Now})
	c := newClient(url, clk.Now)
	steps := []struct {
		at   time.Duration
		want outcome
	}{
		{at: 0, want: green},
		{at: 0, want: green},
		{at: 500 * time.Millisecond, want: green},
		{at: 999 * time.Millisecond, want: rateLimited}, // three in [0, 999ms]
		{at: time.Second, want: green},                  // the two at 0 have left the window
		{at: time.Second, want: green},
		{at: 1200 * time.Millisecond, want: rateLimited},
		{at: 1500 * time.Millisecond, want: green}, // the one at 500ms has left
	}
	var got, want []outcome
	for i, s := range steps {
		clk.At(s.at)
		a, err := c.ReuseApplicant(t.Context(), "tok-"+strconv.Itoa(i), "")
		got = append(got, summarize(t, a, err))
		want = append(want, s.want)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes mismatch (-want +got):\n%s", diff)
	}
	wantStats := sumsubsim.Stats{Requests: 8, SuccessfulImports: 6, Rejected429: 2, MaxRequestsInAnySecond: 3}
	if diff := cmp.Diff(wantStats, sim.Stats()); diff != "" {
		t.Errorf("stats mismatch (-want +got):\n%s", diff)
	}
}
