package sumsubsim_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
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

// postFaults sends a POST /_sim/faults body and returns the status and the
// answer decoded.
func postFaults(tb testing.TB, url, body string) (int, map[string]any) {
	tb.Helper()
	resp, err := http.Post(url+"/_sim/faults", "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, got
}

func TestOutagesAtRunTime(t *testing.T) {
	t.Parallel()
	clk := newClock(start)
	sim, url := newSim(t, sumsubsim.Config{Now: clk.Now, Faults: sumsubsim.Faults{FailRate: 0.25}})
	c := newClient(url, clk.Now)

	status, got := postFaults(t, url, `{"outage":"503","seconds":30}`)
	ends := start.Add(30 * time.Second).UTC().Format(time.RFC3339)
	want := map[string]any{"outage": "503", "outageEndsAt": ends, "failRate": 0.25, "stallRate": 0.0,
		"stall": "0s", "burstEvery": "0s", "burstFor": "0s"}
	if status != http.StatusOK || !cmp.Equal(want, got) {
		t.Errorf("POST 503 outage: %d %v, want 200 %v (the fail rate kept)", status, got, want)
	}
	// Every request is taken, signed or not, the probe's GET too, and nothing is imported.
	_, err := c.ReuseApplicant(t.Context(), "tok-1", "")
	if diff := cmp.Diff(unavailable, summarize(t, sumsub.Applicant{}, err)); diff != "" {
		t.Errorf("in a 503 outage (-want +got):\n%s", diff)
	}
	if err := newClient(url, nil).Probe(t.Context()); err == nil {
		t.Error("Probe in a 503 outage: nil, want the 503")
	}
	resp, err := http.Get(url + "/_sim/faults")
	if err != nil {
		t.Fatal(err)
	}
	var read map[string]any
	json.NewDecoder(resp.Body).Decode(&read) //nolint:errcheck // compared below
	resp.Body.Close()
	if !cmp.Equal(want, read) {
		t.Errorf("GET /_sim/faults = %v, want %v", read, want)
	}

	// The outage ends by itself.
	clk.Add(30 * time.Second)
	if err := c.Probe(t.Context()); err != nil {
		t.Errorf("Probe after the outage: %v, want nil (Sumsub's 404 for no such applicant)", err)
	}

	// A rotated secret: every request 401, signature mismatch, until "none".
	if status, got := postFaults(t, url, `{"outage":"401","failRate":0}`); status != http.StatusOK || got["outageEndsAt"] != nil || got["failRate"] != 0.0 {
		t.Errorf("POST 401 outage: %d %v, want 200 without an end", status, got)
	}
	_, err = c.ReuseApplicant(t.Context(), "tok-2", "")
	var se *sumsub.Error
	if !errors.As(err, &se) || se.Kind != sumsub.Unauthorized || se.Description != "Request signature mismatch" {
		t.Errorf("in a 401 outage: %v, want Unauthorized, Request signature mismatch", err)
	}
	clk.Add(time.Hour)
	if _, err := c.ReuseApplicant(t.Context(), "tok-3", ""); err == nil {
		t.Error("a 401 outage without seconds ended by itself")
	}
	postFaults(t, url, `{"outage":"none"}`)
	if _, err := c.ReuseApplicant(t.Context(), "tok-4", ""); err != nil {
		t.Errorf("after outage none: %v", err)
	}

	// A timeout outage never answers: the client's timeout decides.
	postFaults(t, url, `{"outage":"timeout"}`)
	short := sumsub.New(sumsub.Config{BaseURL: url, AppToken: appToken, SecretKey: secret, Now: clk.Now, Timeout: 100 * time.Millisecond})
	_, err = short.ReuseApplicant(t.Context(), "tok-5", "")
	if diff := cmp.Diff(outcome{Failed: true, Kind: sumsub.Transient}, summarize(t, sumsub.Applicant{}, err)); diff != "" {
		t.Errorf("in a timeout outage (-want +got):\n%s", diff)
	}

	st := sim.Stats()
	if st.OutageAnswers != 5 || st.SuccessfulImports != 1 || sim.Imports("tok-5") != 0 {
		t.Errorf("stats %+v, want 5 outage answers (a swallowed timeout counts) and tok-4 alone imported", st)
	}
	// Reset clears the faults with the counters.
	sim.Reset()
	if f := sim.Faults(); f != (sumsubsim.Faults{}) {
		t.Errorf("faults after reset: %+v, want none", f)
	}
}

func TestFaultsRefused(t *testing.T) {
	t.Parallel()
	sim, url := newSim(t, sumsubsim.Config{Faults: sumsubsim.Faults{FailRate: 0.5}})
	for _, body := range []string{`{"outage":"down"}`, `{"failRate":2}`, `{"stall":"soon"}`, `{"outage":"503","seconds":-1}`, `{"bursts":1}`, `not json`} {
		if status, got := postFaults(t, url, body); status != http.StatusBadRequest || got["description"] == "" {
			t.Errorf("POST %s: %d %v, want 400 with a description", body, status, got)
		}
	}
	// Nothing of a refused change was applied.
	if status, _ := postFaults(t, url, `{"stallRate":0.5,"stall":"bad"}`); status != http.StatusBadRequest || sim.Faults().StallRate != 0 || sim.Faults().FailRate != 0.5 {
		t.Errorf("a refused change applied: %+v", sim.Faults())
	}
}
