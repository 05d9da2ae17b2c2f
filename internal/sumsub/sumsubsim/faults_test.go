package sumsubsim_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
)

func TestFailRate(t *testing.T) {
	t.Parallel()
	sim, url := newSim(t, sumsubsim.Config{Faults: sumsubsim.Faults{FailRate: 1}})
	c := newClient(url, nil)
	const token = "tok-failed"
	a, err := c.ReuseApplicant(t.Context(), token, "")
	if diff := cmp.Diff(unavailable, summarize(t, a, err)); diff != "" {
		t.Errorf("outcome with FailRate 1 mismatch (-want +got):\n%s", diff)
	}
	var e *sumsub.Error
	if errors.As(err, &e) && e.Description != "Service temporarily unavailable" {
		t.Errorf("Description = %q, want the flaky token's", e.Description)
	}
	if got := sim.Imports(token); got != 0 {
		t.Errorf("Imports = %d after an injected 503, want 0", got)
	}

	// The 503 came before anything was imported: the token is still good.
	sim.SetFaults(sumsubsim.Faults{})
	a, err = c.ReuseApplicant(t.Context(), token, "")
	if diff := cmp.Diff(green, summarize(t, a, err)); diff != "" {
		t.Errorf("outcome with FailRate 0 mismatch (-want +got):\n%s", diff)
	}
	want := sumsubsim.Stats{Requests: 2, SuccessfulImports: 1, MaxRequestsInAnySecond: 2, Injected503: 1}
	if diff := cmp.Diff(want, sim.Stats()); diff != "" {
		t.Errorf("stats mismatch (-want +got):\n%s", diff)
	}
}

func TestSeededFailRate(t *testing.T) {
	t.Parallel()
	const n = 1000
	sim := sumsubsim.New(sumsubsim.Config{AppToken: appToken, SecretKey: secret, RateLimit: n, Faults: sumsubsim.Faults{FailRate: 0.1, Seed: 1}})
	failed := 0
	for i := range n {
		rec := httptest.NewRecorder()
		sim.ServeHTTP(rec, signedRequest(t, http.MethodPost, "/resources/api/reusableIdentity/reuse?shareToken=tok-"+strconv.Itoa(i)))
		switch rec.Code {
		case http.StatusServiceUnavailable:
			failed++
		case http.StatusOK:
		default:
			t.Fatalf("request %d: status %d, want 200 or 503; body %s", i, rec.Code, rec.Body)
		}
	}
	if failed < n*5/100 || failed > n*15/100 {
		t.Errorf("%d of %d requests got 503, want 5%% to 15%%", failed, n)
	}
	st := sim.Stats()
	if st.Injected503 != failed || st.SuccessfulImports != n-failed {
		t.Errorf("stats %+v, want Injected503 %d and SuccessfulImports %d", st, failed, n-failed)
	}
}

func TestStallLosesTheAnswer(t *testing.T) {
	t.Parallel()
	sim, url := newSim(t, sumsubsim.Config{Faults: sumsubsim.Faults{StallRate: 1, Stall: time.Minute}})
	const token = "tok-stalled"
	// The client gives up long before the stall ends.
	c := sumsub.New(sumsub.Config{BaseURL: url, AppToken: appToken, SecretKey: secret, Timeout: 100 * time.Millisecond})
	a, err := c.ReuseApplicant(t.Context(), token, "")
	if err == nil {
		t.Fatalf("ReuseApplicant = %+v, want a timeout", a)
	}
	// The handler notices the client is gone a moment after the client does.
	waitFor(t, func() bool { return sim.Stats().LostAnswers > 0 })
	want := sumsubsim.Stats{Requests: 1, SuccessfulImports: 1, MaxRequestsInAnySecond: 1, Stalls: 1, LostAnswers: 1}
	if diff := cmp.Diff(want, sim.Stats()); diff != "" {
		t.Errorf("stats mismatch (-want +got):\n%s", diff)
	}

	// The import happened although its answer was lost: a retry finds the token used.
	sim.SetFaults(sumsubsim.Faults{})
	a, err = newClient(url, nil).ReuseApplicant(t.Context(), token, "")
	if diff := cmp.Diff(invalid, summarize(t, a, err)); diff != "" {
		t.Errorf("retry outcome mismatch (-want +got):\n%s", diff)
	}
	wantTokens := map[string]sumsubsim.TokenStats{token: {Seen: 2, Imports: 1, Lost: true}}
	if diff := cmp.Diff(wantTokens, getTokens(t, url)); diff != "" {
		t.Errorf("/_sim/tokens mismatch (-want +got):\n%s", diff)
	}
}

func TestStallAnswered(t *testing.T) {
	t.Parallel()
	const stall = 100 * time.Millisecond
	sim, url := newSim(t, sumsubsim.Config{Faults: sumsubsim.Faults{StallRate: 1, Stall: stall}})
	begin := time.Now()
	a, err := newClient(url, nil).ReuseApplicant(t.Context(), "tok-patient", "")
	if elapsed := time.Since(begin); elapsed < stall {
		t.Errorf("answered after %v, want at least %v", elapsed, stall)
	}
	if diff := cmp.Diff(green, summarize(t, a, err)); diff != "" {
		t.Errorf("outcome mismatch (-want +got):\n%s", diff)
	}
	want := sumsubsim.Stats{Requests: 1, SuccessfulImports: 1, MaxRequestsInAnySecond: 1, Stalls: 1}
	if diff := cmp.Diff(want, sim.Stats()); diff != "" {
		t.Errorf("stats mismatch (-want +got):\n%s", diff)
	}
	wantTokens := map[string]sumsubsim.TokenStats{"tok-patient": {Seen: 1, Imports: 1}}
	if diff := cmp.Diff(wantTokens, getTokens(t, url)); diff != "" {
		t.Errorf("/_sim/tokens mismatch (-want +got):\n%s", diff)
	}
}

func TestBurst(t *testing.T) {
	t.Parallel()
	clk := newClock(start)
	faults := sumsubsim.Faults{BurstEvery: 10 * time.Second, BurstFor: 2 * time.Second}
	sim, url := newSim(t, sumsubsim.Config{RateLimit: 1, Now: clk.Now, Faults: faults})
	c := newClient(url, clk.Now)
	steps := []struct {
		at   time.Duration
		want outcome
	}{
		{at: 0, want: rateLimited}, // the first burst begins at the start
		{at: 0, want: rateLimited},
		{at: 1999 * time.Millisecond, want: rateLimited},
		{at: 2 * time.Second, want: green}, // bursts stayed out of the rate window
		{at: 2500 * time.Millisecond, want: rateLimited},
		{at: 10500 * time.Millisecond, want: rateLimited}, // the second burst
		{at: 12 * time.Second, want: green},
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
	wantStats := sumsubsim.Stats{Requests: 7, SuccessfulImports: 2, Rejected429: 1, MaxRequestsInAnySecond: 1, Burst429: 4}
	if diff := cmp.Diff(wantStats, sim.Stats()); diff != "" {
		t.Errorf("stats mismatch (-want +got):\n%s", diff)
	}
}

func TestResetClearsFaultCounters(t *testing.T) {
	t.Parallel()
	sim, url := newSim(t, sumsubsim.Config{Faults: sumsubsim.Faults{StallRate: 1}})
	if _, err := newClient(url, nil).ReuseApplicant(t.Context(), "tok-1", ""); err != nil {
		t.Fatal(err)
	}
	if got := sim.Stats().Stalls; got != 1 {
		t.Fatalf("Stalls = %d before reset, want 1", got)
	}
	sim.Reset()
	if diff := cmp.Diff(sumsubsim.Stats{}, sim.Stats()); diff != "" {
		t.Errorf("stats after reset mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]sumsubsim.TokenStats{}, getTokens(t, url)); diff != "" {
		t.Errorf("/_sim/tokens after reset mismatch (-want +got):\n%s", diff)
	}
}
