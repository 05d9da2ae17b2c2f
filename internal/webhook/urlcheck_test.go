package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
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

// TestSpecialPurposeRanges checks every range of the table at its first and
// last address, the globally reachable exceptions, and the IPv6 forms that
// carry an IPv4 address.
func TestSpecialPurposeRanges(t *testing.T) {
	for _, r := range specialPurpose {
		for _, ip := range []netip.Addr{r.prefix.Masked().Addr(), lastAddr(r.prefix)} {
			if len(embedded(ip)) > 0 {
				continue // judged by the IPv4 address it carries (below)
			}
			if got := public(ip); got != r.global {
				t.Errorf("%s (%s, %s): public %v, want %v", ip, r.prefix, r.name, got, r.global)
			}
		}
	}
	tests := []struct {
		ip     string
		public bool
	}{
		{"8.8.8.8", true}, {"1.1.1.1", true}, {"2606:4700:4700::1111", true},
		{"0.1.2.3", false}, {"198.19.255.255", false}, {"192.0.0.8", false}, {"192.0.0.9", true},
		{"240.1.2.3", false}, {"255.255.255.255", false}, {"255.255.255.254", false}, {"100.127.255.255", false},
		{"::ffff:10.0.0.1", false}, {"::ffff:8.8.8.8", true},
		{"::10.0.0.1", false}, {"::8.8.8.8", true}, // IPv4-compatible
		{"64:ff9b::a00:1", false}, {"64:ff9b::808:808", true}, // NAT64 of 10.0.0.1, 8.8.8.8
		{"64:ff9b:1::808:808", false},
		{"2002:a00:1::1", false}, {"2002:808:808::1", true}, // 6to4 of 10.0.0.1, 8.8.8.8
		// Teredo: server 65.54.227.120, client 10.0.0.1 (inverted: f5ff:fffe) / 8.8.8.8 (f7f7:f7f7).
		{"2001:0:4136:e378:8000:63bf:f5ff:fffe", false}, {"2001:0:4136:e378:8000:63bf:f7f7:f7f7", true},
		{"2001:db8::1", false}, {"3fff::1", false}, {"fd00::1", false}, {"fe80::1", false}, {"fec0::1", false},
		{"ff02::1", false}, {"100::1", false}, {"2001:2::1", false}, {"2001:20::1", true}, {"5f00::1", false},
	}
	for _, tt := range tests {
		if got := public(netip.MustParseAddr(tt.ip)); got != tt.public {
			t.Errorf("public(%s) = %v, want %v", tt.ip, got, tt.public)
		}
		if err := checkURL(context.Background(), "http://"+bracket(tt.ip)+"/hook", false); (err == nil) != tt.public {
			t.Errorf("checkURL(%s): %v, want accepted %v", tt.ip, err, tt.public)
		}
	}
}

func bracket(ip string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(a)*8; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	ip, _ := netip.AddrFromSlice(a)
	return ip
}
