package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDeliveryRefusesPrivateAddressesAtConnect(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	_, err := newHTTPClient(false).Get(srv.URL)
	if err == nil || !strings.Contains(err.Error(), "not a public address") {
		t.Errorf("connect to %s with private addresses refused: %v", srv.URL, err)
	}
	res, err := newHTTPClient(true).Get(srv.URL)
	if err != nil {
		t.Fatalf("connect with private addresses allowed: %v", err)
	}
	res.Body.Close()
}

func TestNoRedirectsFollowed(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	res, err := newHTTPClient(true).Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTemporaryRedirect || hits != 1 {
		t.Errorf("status %d after %d requests; want the redirect itself, unfollowed", res.StatusCode, hits)
	}
}

func TestRetryScheduleFitsInADay(t *testing.T) {
	var total time.Duration
	for n := 1; n < MaxAttempts; n++ {
		total += retryWait(n, DefaultRetryBase)
	}
	if total > 24*time.Hour || retryWait(1, DefaultRetryBase) != 5*time.Second || retryWait(2, DefaultRetryBase) != 5*time.Minute {
		t.Errorf("schedule: first %s, second %s, total %s", retryWait(1, DefaultRetryBase), retryWait(2, DefaultRetryBase), total)
	}
	if got := retryWait(1, 50*time.Millisecond); got != 50*time.Millisecond {
		t.Errorf("scaled first wait = %s", got)
	}
}

func TestCheckURLAllowsPublicNamesOnly(t *testing.T) {
	ctx := context.Background()
	if err := checkURL(ctx, "http://localhost/x", false); err == nil {
		t.Error("localhost accepted")
	}
	if err := checkURL(ctx, "http://localhost/x", true); err != nil {
		t.Errorf("localhost refused with private URLs allowed: %v", err)
	}
	if err := checkURL(ctx, "http://user:pw@example.com/x", true); err == nil {
		t.Error("credentials in the URL accepted")
	}
}
