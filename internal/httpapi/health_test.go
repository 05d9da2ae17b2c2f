package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/httpapi"
	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/storage/s3local"
	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

func TestHealthAndContract(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	get := func(url string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		r := e.Do(t, req)
		return r.Status, string(r.Body)
	}
	if code, body := get(e.URL + "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	want := `{"status":"ok","checks":{"postgres":"ok","redis":"ok","s3":"ok"},"sumsub":{"circuit":"closed","queue":"running"}}`
	if code, body := get(e.URL + "/readyz"); code != 200 || body != want {
		t.Errorf("readyz: %d %s, want 200 %s", code, body, want)
	}
	if code, body := get(e.URL + "/openapi.yaml"); code != 200 || !strings.HasPrefix(body, "openapi: 3.") {
		t.Errorf("openapi.yaml: %d %.40q", code, body)
	}

	// S3 down: not ready, and the body names the dependency but not its address.
	down, err := storage.New(context.Background(), s3local.Config("http://127.0.0.1:1", "kycbatch"))
	if err != nil {
		t.Fatal(err)
	}
	a := app.New(e.Pool, e.Redis, down, app.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(httpapi.New(a, e.API))
	defer srv.Close()
	want = `{"status":"unavailable","checks":{"postgres":"ok","redis":"ok","s3":"unavailable"},"sumsub":{"circuit":"closed","queue":"running"}}`
	if code, body := get(srv.URL + "/readyz"); code != http.StatusServiceUnavailable || body != want {
		t.Errorf("readyz with S3 down: %d %s, want 503 %s", code, body, want)
	}
}
