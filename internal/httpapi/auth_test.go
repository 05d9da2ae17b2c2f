package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"

	"github.com/google/go-cmp/cmp"

	"github.com/kycbatch/kycbatch/internal/auth"
)

func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, _ := e.Business(t)
	revoked, _ := e.Business(t)
	if n, err := e.Keys.RevokeKey(context.Background(), auth.Prefix(revoked)); err != nil || n != 1 {
		t.Fatalf("revoke: %d, %v", n, err)
	}
	const (
		missing      = `{"code":"0000000100","message":"Invalid Authorization: missing API key","parameter":""}`
		invalid      = `{"code":"0000000200","message":"Invalid Authorization","parameter":""}`
		reportFamily = `{"data":null,"status_code":401,"success":false,"message":"Unauthorized - Invalid or expired token","message_code":"unauthorized"}`
	)
	tests := []struct {
		name     string
		path     string
		header   string
		value    string
		wantCode int
		wantBody string
	}{
		{"no key", "/entity", "", "", 401, missing},
		{"empty bearer", "/entity", "Authorization", "Bearer ", 401, missing},
		{"unknown key", "/entity", "Authorization", "Bearer " + auth.NewKey(), 401, invalid},
		{"garbage key", "/entity", "X-API-Key", "x", 401, invalid},
		{"key with a changed last character", "/entity", "Authorization", "Bearer " + key[:len(key)-1] + flip(key[len(key)-1]), 401, invalid},
		{"revoked key", "/entity", "Authorization", "Bearer " + revoked, 401, invalid},
		{"bearer", "/entity", "Authorization", "Bearer " + key, 200, ""},
		{"bearer, any case", "/entity", "Authorization", "bearer " + key, 200, ""},
		{"bare Authorization", "/entity", "Authorization", key, 200, ""},
		{"X-API-Key", "/entity", "X-API-Key", key, 200, ""},
		{"report family, no key", "/api/v1/stamper-v2/bulk-usage-report/download?client_id=x", "", "", 401, reportFamily},
		{"report family, unknown key", "/api/v1/stamper-v2/bulk-usage-report/download?client_id=x", "X-API-Key", auth.NewKey(), 401, reportFamily},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, e.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.header != "" {
				req.Header.Set(tt.header, tt.value)
			}
			r := e.Do(t, req)
			if r.Status != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.wantCode, r.Body)
			}
			if got := r.Header.Get("Content-Type"); got != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", got)
			}
			if tt.wantBody != "" {
				if diff := cmp.Diff(tt.wantBody, string(r.Body)); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
