package sumsubsim_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
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
	refused     = outcome{Failed: true, Kind: sumsub.Unauthorized, HTTPStatus: 401}
)

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
