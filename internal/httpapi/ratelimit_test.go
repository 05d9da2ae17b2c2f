package httpapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// TestRequestRatePerBusiness: a business gets its rate and a burst of twice
// as many, then 429 in its route's family with Retry-After; every
// authenticated answer carries the RateLimit headers; another business is
// not held back; a 401 carries none.
func TestRequestRatePerBusiness(t *testing.T) {
	t.Parallel()
	const rate = 1
	e := apitest.New(t, apitest.Options{APIRateLimit: rate})
	noisy, _ := e.Business(t)
	quiet, _ := e.Business(t)

	var passed int
	var refused apitest.Response
	start := time.Now()
	for range 30 {
		r := e.Call(t, http.MethodGet, "/entity", noisy, nil)
		if r.Header.Get("RateLimit-Policy") != `"default";q=1;w=1` || !strings.HasPrefix(r.Header.Get("RateLimit"), `"default";r=`) {
			t.Fatalf("answer %d without the RateLimit headers: %v", r.Status, r.Header)
		}
		if r.Status == http.StatusTooManyRequests {
			refused = r
			break
		}
		passed++
	}
	// The burst (2), and a permit more for each second the requests took.
	if passed < 2*rate || passed > 2*rate+int(time.Since(start)/time.Second)+1 {
		t.Errorf("%d requests passed before a 429, want the burst of %d", passed, 2*rate)
	}
	if string(refused.Body) != `{"code":"0000000429","message":"Too many requests","parameter":""}` {
		t.Errorf("429 body %s", refused.Body)
	}
	if s, err := strconv.Atoi(refused.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q, want whole seconds", refused.Header.Get("Retry-After"))
	}
	if !strings.HasPrefix(refused.Header.Get("RateLimit"), `"default";r=0;t=`) {
		t.Errorf("RateLimit %q on a 429, want r=0", refused.Header.Get("RateLimit"))
	}
	r := e.Call(t, http.MethodGet, "/api/v1/stamper-v2/bulk-usage-report/download?client_id=x", noisy, nil)
	if r.Status != http.StatusTooManyRequests || string(r.Body) != `{"data":null,"status_code":429,"success":false,"message":"Too many requests","message_code":"rate_limited"}` {
		t.Errorf("report family over the rate: %d %s", r.Status, r.Body)
	}
	if r := e.Call(t, http.MethodGet, "/entity", quiet, nil); r.Status != http.StatusOK || r.Header.Get("RateLimit") != `"default";r=1;t=1` {
		t.Errorf("another business: %d, RateLimit %q: want 200 with its own full bucket", r.Status, r.Header.Get("RateLimit"))
	}
	if r := e.Call(t, http.MethodGet, "/entity", "not-a-key", nil); r.Status != http.StatusUnauthorized || r.Header.Get("RateLimit") != "" {
		t.Errorf("a 401: %d with RateLimit %q, want none", r.Status, r.Header.Get("RateLimit"))
	}
}
