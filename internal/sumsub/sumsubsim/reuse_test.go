package sumsubsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
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
		{token: sumsubsim.PrefixExpired + "1", want: outcome{Failed: true, Kind: sumsub.Permanent, HTTPStatus: 401}},
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
	// Sumsub quotes the token's id.
	id := sumsubsim.TokenID(token)
	if !strings.HasPrefix(e.Description, "Token is invalid: Token "+id+" is invalid now") || !strings.Contains(e.Description, "with ttl 1200 but accessed at") {
		t.Errorf("Description = %q, want Sumsub's expired-token description quoting %s", e.Description, id)
	}
	if e.Kind != sumsub.Permanent {
		t.Errorf("Kind = %s, want permanent: an expired token is the record's fault", e.Kind)
	}
	if strings.Contains(e.Description, token) {
		t.Errorf("Description = %q echoes the real share token", e.Description)
	}
	if strings.Contains(err.Error(), "_act-") || strings.Contains(e.Message(), "_act-") {
		t.Errorf("Error() = %q, Message() = %q: shows the token's id", err, e.Message())
	}
}

func TestTokenID(t *testing.T) {
	t.Parallel()
	// A share token as Sumsub makes them: an unsigned JWT whose claim is its id.
	jwt := "eyJhbGciOiJub25lIn0.eyJqdGkiOiJfYWN0LXNieC1qd3QtMTIzIn0."
	if got, want := sumsubsim.TokenID(jwt), "_act-sbx-jwt-123"; got != want {
		t.Errorf("TokenID(JWT) = %q, want its jti %q", got, want)
	}
	if got := sumsubsim.TokenID("sim-expired-1"); !regexp.MustCompile(`^_act-sim-[0-9a-f]{16}$`).MatchString(got) || got == sumsubsim.TokenID("sim-expired-2") {
		t.Errorf("TokenID(sim-expired-1) = %q, want _act-sim- and 16 hex digits of its own", got)
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
