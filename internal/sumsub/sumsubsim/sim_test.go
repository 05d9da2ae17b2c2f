package sumsubsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
)

const (
	appToken = "sbx:test-app-token"
	secret   = "kycbatch-test-secret"
)

var start = time.Date(2025, 8, 5, 15, 31, 57, 0, time.UTC)

// clock is a settable clock, shared by a simulator and its clients so that
// the rate window and clock skew are deterministic.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) Now() time.Time            { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)           { c.ns.Store(t.UnixNano()) }
func (c *clock) Add(d time.Duration)       { c.ns.Add(int64(d)) }
func (c *clock) At(d time.Duration) *clock { c.Set(start.Add(d)); return c }

// newSim serves a simulator with the test credentials over real HTTP.
func newSim(tb testing.TB, cfg sumsubsim.Config) (*sumsubsim.Server, string) {
	tb.Helper()
	cfg.AppToken = appToken
	cfg.SecretKey = secret
	sim := sumsubsim.New(cfg)
	srv := httptest.NewServer(sim)
	tb.Cleanup(srv.Close)
	return sim, srv.URL
}

// newClient returns the real client for a simulator at baseURL; now may be nil.
func newClient(baseURL string, now func() time.Time) *sumsub.Client {
	return sumsub.New(sumsub.Config{BaseURL: baseURL, AppToken: appToken, SecretKey: secret, Now: now})
}

// outcome sums up a call, for comparing with what the simulator promises.
type outcome struct {
	Review     sumsub.Review // on success
	Failed     bool
	Kind       sumsub.Kind
	HTTPStatus int
	Code       int
	Name       string
}

var applicantID = regexp.MustCompile(`^[0-9a-f]{24}$`)

func summarize(tb testing.TB, a sumsub.Applicant, err error) outcome {
	tb.Helper()
	if err == nil {
		if !applicantID.MatchString(a.ID) {
			tb.Errorf("applicant id %q is not 24 hex characters", a.ID)
		}
		return outcome{Review: a.Review}
	}
	var e *sumsub.Error
	if !errors.As(err, &e) {
		tb.Fatalf("error %v (%T) holds no *sumsub.Error", err, err)
	}
	return outcome{Failed: true, Kind: e.Kind, HTTPStatus: e.HTTPStatus, Code: e.Code, Name: e.Name}
}

var (
	green       = outcome{Review: sumsub.Review{Status: "completed", Answer: "GREEN"}}
	invalid     = outcome{Failed: true, Kind: sumsub.Permanent, HTTPStatus: 400, Code: sumsub.CodeInvalidShareToken, Name: "invalid-share-token"}
	nonSuitable = outcome{Failed: true, Kind: sumsub.Permanent, HTTPStatus: 400, Code: sumsub.CodeNonSuitableShareToken, Name: "non-suitable-share-token"}
	rateLimited = outcome{Failed: true, Kind: sumsub.RateLimited, HTTPStatus: 429}
	unavailable = outcome{Failed: true, Kind: sumsub.Transient, HTTPStatus: 503}
	refused     = outcome{Failed: true, Kind: sumsub.Permanent, HTTPStatus: 401}
)

func TestTestModeTokens(t *testing.T) {
	t.Parallel()
	sim, url := newSim(t, sumsubsim.Config{RateLimit: 1000})
	c := newClient(url, nil)
	tests := []struct {
		token, level string
		want         outcome
	}{
		{token: "tok-any", want: green},
		{token: "tok-level-kyc", level: "levelKyc", want: green},
		{token: "tok-basic", level: sumsubsim.DefaultLevel, want: green},
		{token: sumsubsim.PrefixRed + "1", want: outcome{Review: sumsub.Review{Status: "completed", Answer: "RED", RejectType: "FINAL"}}},
		{token: sumsubsim.PrefixPending + "1", want: outcome{Review: sumsub.Review{Status: "pending"}}},
		{token: sumsubsim.PrefixInvalid + "1", want: invalid},
		{token: sumsubsim.PrefixExpired + "1", want: refused},
		{token: sumsubsim.PrefixLevel + "1", want: nonSuitable},
		{token: sumsubsim.PrefixLevel + "2", level: "levelKyc", want: nonSuitable},
		{token: "tok-unknown-level", level: "id-liveness-preview", want: nonSuitable},
		{token: "", want: invalid},
	}
	for _, tt := range tests {
		t.Run(tt.token+"@"+tt.level, func(t *testing.T) {
			t.Parallel()
			a, err := c.ReuseApplicant(t.Context(), tt.token, tt.level)
			if diff := cmp.Diff(tt.want, summarize(t, a, err)); diff != "" {
				t.Fatalf("outcome mismatch (-want +got):\n%s", diff)
			}
			if err != nil {
				if strings.Contains(err.Error(), tt.token) && tt.token != "" {
					t.Errorf("Error() = %q, contains the share token", err)
				}
				if got := sim.Imports(tt.token); got != 0 {
					t.Errorf("Imports(%q) = %d after a refusal, want 0", tt.token, got)
				}
				return
			}
			if got := sim.Imports(tt.token); got != 1 {
				t.Errorf("Imports(%q) = %d, want 1", tt.token, got)
			}
			// The status endpoint knows the imported applicant.
			review, err := c.ApplicantStatus(t.Context(), a.ID)
			if err != nil {
				t.Fatalf("ApplicantStatus: %v", err)
			}
			if diff := cmp.Diff(a.Review, review); diff != "" {
				t.Errorf("status mismatch (-import +status):\n%s", diff)
			}
		})
	}
}

func TestExpiredTokenDescription(t *testing.T) {
	t.Parallel()
	_, url := newSim(t, sumsubsim.Config{})
	const token = sumsubsim.PrefixExpired + "do-not-echo"
	_, err := newClient(url, nil).ReuseApplicant(t.Context(), token, "")
	var e *sumsub.Error
	if !errors.As(err, &e) {
		t.Fatalf("ReuseApplicant: %v, want a *sumsub.Error", err)
	}
	if !strings.HasPrefix(e.Description, "Token is invalid: Token _act-") || !strings.Contains(e.Description, "with ttl 1200 but accessed at") {
		t.Errorf("Description = %q, want Sumsub's expired-token description", e.Description)
	}
	if strings.Contains(e.Description, token) {
		t.Errorf("Description = %q echoes the real share token", e.Description)
	}
	if strings.Contains(err.Error(), "_act-") {
		t.Errorf("Error() = %q shows the echoed token", err)
	}
}

func TestUnknownApplicant(t *testing.T) {
	t.Parallel()
	_, url := newSim(t, sumsubsim.Config{})
	_, err := newClient(url, nil).ApplicantStatus(t.Context(), "000000000000000000000000")
	want := outcome{Failed: true, Kind: sumsub.Permanent, HTTPStatus: 404}
	if diff := cmp.Diff(want, summarize(t, sumsub.Applicant{}, err)); diff != "" {
		t.Errorf("outcome mismatch (-want +got):\n%s", diff)
	}
}

func TestShareTokensAreSingleUse(t *testing.T) {
	t.Parallel()
	sim, url := newSim(t, sumsubsim.Config{})
	c := newClient(url, nil)
	const token = "tok-once"

	var got []outcome
	for range 2 {
		a, err := c.ReuseApplicant(t.Context(), token, "")
		got = append(got, summarize(t, a, err))
	}
	if diff := cmp.Diff([]outcome{green, invalid}, got); diff != "" {
		t.Errorf("outcomes mismatch (-want +got):\n%s", diff)
	}
	wantStats := sumsubsim.Stats{Requests: 2, SuccessfulImports: 1, ReusedTokenAttempts: 1, MaxRequestsInAnySecond: 2}
	if diff := cmp.Diff(wantStats, sim.Stats()); diff != "" {
		t.Errorf("stats mismatch (-want +got):\n%s", diff)
	}
	if got := sim.Imports(token); got != 1 {
		t.Errorf("Imports = %d, want 1", got)
	}
	if got := sim.Seen(token); got != 2 {
		t.Errorf("Seen = %d, want 2", got)
	}
}

func TestConcurrentUsesOfOneToken(t *testing.T) {
	t.Parallel()
	sim, url := newSim(t, sumsubsim.Config{RateLimit: 1000})
	c := newClient(url, nil)
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { _, _ = c.ReuseApplicant(t.Context(), "tok-raced", "") })
	}
	wg.Wait()
	want := sumsubsim.Stats{Requests: n, SuccessfulImports: 1, ReusedTokenAttempts: n - 1, MaxRequestsInAnySecond: n}
	if diff := cmp.Diff(want, sim.Stats()); diff != "" {
		t.Errorf("stats mismatch (-want +got):\n%s", diff)
	}
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      sumsub.Config
		wantDesc string
	}{
		{name: "wrong secret", cfg: sumsub.Config{AppToken: appToken, SecretKey: "wrong"}, wantDesc: "Request signature mismatch"},
		{name: "wrong app token", cfg: sumsub.Config{AppToken: "sbx:other", SecretKey: secret}, wantDesc: "App token is invalid"},
		{name: "no credentials", cfg: sumsub.Config{}, wantDesc: "App token is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim, url := newSim(t, sumsubsim.Config{})
			cfg := tt.cfg
			cfg.BaseURL = url
			_, err := sumsub.New(cfg).ReuseApplicant(t.Context(), "tok-1", "")
			if diff := cmp.Diff(refused, summarize(t, sumsub.Applicant{}, err)); diff != "" {
				t.Errorf("outcome mismatch (-want +got):\n%s", diff)
			}
			var e *sumsub.Error
			if errors.As(err, &e) && e.Description != tt.wantDesc {
				t.Errorf("Description = %q, want %q", e.Description, tt.wantDesc)
			}
			// Refused requests count, but stay out of the rate window.
			if diff := cmp.Diff(sumsubsim.Stats{Requests: 1}, sim.Stats()); diff != "" {
				t.Errorf("stats mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClockSkew(t *testing.T) {
	t.Parallel()
	tooFar := outcome{Failed: true, Kind: sumsub.Permanent, HTTPStatus: 401}
	tests := []struct {
		skew time.Duration
		want outcome
	}{
		{skew: -61 * time.Second, want: tooFar},
		{skew: -60 * time.Second, want: green},
		{skew: 0, want: green},
		{skew: 60 * time.Second, want: green},
		{skew: 61 * time.Second, want: tooFar},
	}
	for _, tt := range tests {
		t.Run(tt.skew.String(), func(t *testing.T) {
			t.Parallel()
			simClock := newClock(start)
			_, url := newSim(t, sumsubsim.Config{Now: simClock.Now})
			c := newClient(url, func() time.Time { return simClock.Now().Add(tt.skew) })
			a, err := c.ReuseApplicant(t.Context(), "tok-1", "")
			if diff := cmp.Diff(tt.want, summarize(t, a, err)); diff != "" {
				t.Errorf("outcome mismatch (-want +got):\n%s", diff)
			}
			var e *sumsub.Error
			if errors.As(err, &e) && e.Description != "Request timestamp is too old or too far in the future" {
				t.Errorf("Description = %q, want the timestamp refusal", e.Description)
			}
		})
	}
}

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

func TestFlakyToken(t *testing.T) {
	t.Parallel()
	sim, url := newSim(t, sumsubsim.Config{})
	c := newClient(url, nil)
	const token = sumsubsim.PrefixFlaky + "1"
	var got []outcome
	for range 3 {
		a, err := c.ReuseApplicant(t.Context(), token, "")
		got = append(got, summarize(t, a, err))
	}
	if diff := cmp.Diff([]outcome{unavailable, unavailable, green}, got); diff != "" {
		t.Errorf("outcomes mismatch (-want +got):\n%s", diff)
	}
	if got := sim.Imports(token); got != 1 {
		t.Errorf("Imports = %d, want 1", got)
	}
}

func TestSlowToken(t *testing.T) {
	t.Parallel()
	sim, url := newSim(t, sumsubsim.Config{})
	const token = sumsubsim.PrefixSlow + "1"
	begin := time.Now()
	a, err := newClient(url, nil).ReuseApplicant(t.Context(), token, "")
	if elapsed := time.Since(begin); elapsed < sumsubsim.SlowDelay {
		t.Errorf("answered after %v, want at least %v", elapsed, sumsubsim.SlowDelay)
	}
	if diff := cmp.Diff(green, summarize(t, a, err)); diff != "" {
		t.Errorf("outcome mismatch (-want +got):\n%s", diff)
	}
	if got := sim.Imports(token); got != 1 {
		t.Errorf("Imports = %d, want 1", got)
	}
}

func TestSlowTokenAbandoned(t *testing.T) {
	t.Parallel()
	sim := sumsubsim.New(sumsubsim.Config{AppToken: appToken, SecretKey: secret})
	const token = sumsubsim.PrefixSlow + "abandoned"
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	// Served directly, so that the handler has returned when we look.
	rec := httptest.NewRecorder()
	sim.ServeHTTP(rec, signedRequest(t, http.MethodPost, "/resources/api/reusableIdentity/reuse?shareToken="+token).WithContext(ctx))
	if got := sim.Imports(token); got != 0 {
		t.Errorf("Imports = %d after the client gave up, want 0", got)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	const latency = 100 * time.Millisecond
	_, url := newSim(t, sumsubsim.Config{Latency: latency})
	begin := time.Now()
	a, err := newClient(url, nil).ReuseApplicant(t.Context(), "tok-1", "")
	if elapsed := time.Since(begin); elapsed < latency {
		t.Errorf("answered after %v, want at least %v", elapsed, latency)
	}
	if diff := cmp.Diff(green, summarize(t, a, err)); diff != "" {
		t.Errorf("outcome mismatch (-want +got):\n%s", diff)
	}
}

// signedRequest returns a request to the simulator signed with the test credentials.
func signedRequest(tb testing.TB, method, uri string) *http.Request {
	tb.Helper()
	r := httptest.NewRequest(method, uri, nil)
	ts := time.Now().Unix()
	r.Header.Set("X-App-Token", appToken)
	r.Header.Set("X-App-Access-Ts", strconv.FormatInt(ts, 10))
	r.Header.Set("X-App-Access-Sig", sumsub.Sign(secret, ts, method, r.RequestURI, nil))
	return r
}

func TestAnswerBodies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		req        *http.Request
		wantStatus int
		wantBody   map[string]any // without correlationId, checked apart
	}{
		{
			name:       "unsigned",
			req:        httptest.NewRequest(http.MethodPost, "/resources/api/reusableIdentity/reuse?shareToken=t", nil),
			wantStatus: 401,
			wantBody:   map[string]any{"code": 401.0, "description": "App token is invalid"},
		},
		{
			name:       "missing share token",
			req:        signedRequest(t, http.MethodPost, "/resources/api/reusableIdentity/reuse?levelName=levelKyc"),
			wantStatus: 400,
			wantBody:   map[string]any{"code": 400.0, "errorCode": 10503.0, "errorName": "invalid-share-token", "description": "Share token is missing"},
		},
		{
			name:       "level refused",
			req:        signedRequest(t, http.MethodPost, "/resources/api/reusableIdentity/reuse?shareToken=sim-level-1&levelName=levelKyc"),
			wantStatus: 400,
			wantBody:   map[string]any{"code": 400.0, "errorCode": 10504.0, "errorName": "non-suitable-share-token", "description": "Not Reusable KYC for level: levelKyc"},
		},
		{
			name:       "flaky",
			req:        signedRequest(t, http.MethodPost, "/resources/api/reusableIdentity/reuse?shareToken=sim-flaky-1"),
			wantStatus: 503,
			wantBody:   map[string]any{"code": 503.0, "description": "Service temporarily unavailable"},
		},
		{
			name:       "unknown applicant",
			req:        signedRequest(t, http.MethodGet, "/resources/applicants/000000000000000000000000/status"),
			wantStatus: 404,
			wantBody:   map[string]any{"code": 404.0, "description": "Applicant not found"},
		},
		{
			name:       "route Sumsub has but the simulator lacks",
			req:        signedRequest(t, http.MethodPost, "/resources/applicants/-/import?shareToken=t"),
			wantStatus: 404,
			wantBody:   map[string]any{"code": 404.0, "description": "Not found"},
		},
		{
			name:       "wrong method",
			req:        signedRequest(t, http.MethodGet, "/resources/api/reusableIdentity/reuse?shareToken=t"),
			wantStatus: 404,
			wantBody:   map[string]any{"code": 404.0, "description": "Not found"},
		},
		{
			name:       "unknown simulator path",
			req:        httptest.NewRequest(http.MethodGet, "/_sim/nothing", nil),
			wantStatus: 404,
			wantBody:   map[string]any{"code": 404.0, "description": "Not found"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim := sumsubsim.New(sumsubsim.Config{AppToken: appToken, SecretKey: secret})
			rec := httptest.NewRecorder()
			sim.ServeHTTP(rec, tt.req)
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if id, _ := got["correlationId"].(string); !strings.HasPrefix(id, "req-") || len(id) <= len("req-") {
				t.Errorf("correlationId = %q, want req-<random>", id)
			}
			delete(got, "correlationId")
			if diff := cmp.Diff(tt.wantBody, got); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSuccessBody(t *testing.T) {
	t.Parallel()
	sim := sumsubsim.New(sumsubsim.Config{AppToken: appToken, SecretKey: secret, Now: func() time.Time { return time.Now().UTC() }})
	rec := httptest.NewRecorder()
	sim.ServeHTTP(rec, signedRequest(t, http.MethodPost, "/resources/api/reusableIdentity/reuse?shareToken=sim-red-body"))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	id, _ := got["id"].(string)
	external, _ := got["externalUserId"].(string)
	created, _ := got["createdAt"].(string)
	if !applicantID.MatchString(id) {
		t.Errorf("id = %q, want 24 hex characters", id)
	}
	if !regexp.MustCompile(`^copy-[0-9a-f-]{36}$`).MatchString(external) {
		t.Errorf("externalUserId = %q, want copy-<uuid>", external)
	}
	if _, err := time.Parse(time.DateTime, created); err != nil {
		t.Errorf("createdAt = %q: %v", created, err)
	}
	for _, k := range []string{"id", "externalUserId", "createdAt"} {
		delete(got, k)
	}
	want := map[string]any{
		"clientId": "kycbatch-sim",
		"info":     map[string]any{},
		"review":   map[string]any{"reviewStatus": "completed", "reviewResult": map[string]any{"reviewAnswer": "RED", "reviewRejectType": "FINAL"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("body mismatch (-want +got):\n%s", diff)
	}
}

func TestStatsAndReset(t *testing.T) {
	t.Parallel()
	clk := newClock(start)
	sim, url := newSim(t, sumsubsim.Config{RateLimit: 2, Now: clk.Now})
	c := newClient(url, clk.Now)
	for _, token := range []string{"tok-1", "tok-1", "tok-2"} { // imported, reused, rate-limited
		_, _ = c.ReuseApplicant(t.Context(), token, "")
	}

	resp, err := http.Get(url + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]int
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("stats %s: %v", body, err)
	}
	want := map[string]int{"requests": 3, "successfulImports": 1, "reusedTokenAttempts": 1, "rejected429": 1, "maxRequestsInAnySecond": 2,
		"injected503": 0, "stalls": 0, "lostAnswers": 0, "burst429": 0, "webhooksSent": 0, "webhooksFailed": 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stats JSON mismatch (-want +got):\n%s", diff)
	}

	resp, err = http.Post(url+"/_sim/reset", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("reset: status %d, want 204", resp.StatusCode)
	}
	// Neither /_sim/ request counted, and nothing is left.
	if diff := cmp.Diff(sumsubsim.Stats{}, sim.Stats()); diff != "" {
		t.Errorf("stats after reset mismatch (-want +got):\n%s", diff)
	}
	if got := sim.Imports("tok-1") + sim.Seen("tok-1"); got != 0 {
		t.Errorf("Imports+Seen of tok-1 after reset = %d, want 0", got)
	}
	// The used token and the full window are forgotten too.
	a, err := c.ReuseApplicant(t.Context(), "tok-1", "")
	if diff := cmp.Diff(green, summarize(t, a, err)); diff != "" {
		t.Errorf("outcome after reset mismatch (-want +got):\n%s", diff)
	}
}

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

// getTokens returns what GET /_sim/tokens says.
func getTokens(tb testing.TB, url string) map[string]sumsubsim.TokenStats {
	tb.Helper()
	resp, err := http.Get(url + "/_sim/tokens")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("/_sim/tokens: status %d", resp.StatusCode)
	}
	var tokens map[string]sumsubsim.TokenStats
	if err := json.NewDecoder(resp.Body).Decode(&tokens); err != nil {
		tb.Fatalf("/_sim/tokens: %v", err)
	}
	return tokens
}

// waitFor polls cond until it holds; the test fails if it does not within 5 s.
func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	tb.Fatal("condition not met within 5 s")
}
