package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// TestRouteErrors: an unknown path is a 404 and a method a path does not
// take a 405, each in the family of its path.
func TestRouteErrors(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, _ := e.Business(t)
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{http.MethodGet, "/no-such-route", 404, `{"code":"0000000404","message":"Not found","parameter":""}`},
		{http.MethodDelete, "/entity", 405, `{"code":"0000000405","message":"Method not allowed","parameter":""}`},
		{http.MethodPut, "/entity/kyc/import/batch", 405, `{"code":"0000000405","message":"Method not allowed","parameter":""}`},
		{http.MethodGet, "/api/v1/stamper-v2/bulk-usage-report/initiate", 405,
			`{"data":null,"status_code":405,"success":false,"message":"Method not allowed","message_code":"0000000405"}`},
		{http.MethodGet, "/api/v1/stamper-v2/nothing", 404,
			`{"data":null,"status_code":404,"success":false,"message":"Not found","message_code":"0000000404"}`},
	}
	for _, tt := range tests {
		r := e.Call(t, tt.method, tt.path, key, nil)
		if r.Status != tt.status || string(r.Body) != tt.body {
			t.Errorf("%s %s: %d %s\nwant %d %s", tt.method, tt.path, r.Status, r.Body, tt.status, tt.body)
		}
		if tt.status == http.StatusMethodNotAllowed && r.Header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without an Allow header", tt.method, tt.path)
		}
	}
}
