package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
)

// startDevServer runs the dev server as `make run` does, on free ports, and
// returns the API URL and the key it printed.
func startDevServer(t *testing.T, env map[string]string) (apiURL, key, dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	vars := map[string]string{
		"HTTP_ADDR":    "127.0.0.1:0",
		"DEV_S3_ADDR":  "127.0.0.1:0",
		"DATABASE_URL": dbtest.MissingURL(t),
		"REDIS_URL":    redistest.URL(t),
		"DATA_DIR":     dataDir,
		// Ports of their own: make run may be serving the defaults.
		"SUMSUB_SIM_ADDR": "127.0.0.1:0",
	}
	for k, v := range env {
		vars[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := run(ctx, func(k string) string { return vars[k] }, pw, io.Discard)
		pw.CloseWithError(fmt.Errorf("run returned: %v", err))
		errc <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("run after cancel: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("dev server did not stop within 20 s of its context ending")
		}
	})

	lines := bufio.NewScanner(pr)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		switch {
		case len(fields) >= 2 && fields[0] == "API" && fields[1] != "key":
			apiURL = fields[1]
		case len(fields) >= 3 && fields[0] == "API" && fields[1] == "key":
			key = fields[2]
		}
		if apiURL != "" && key != "" {
			go io.Copy(io.Discard, pr)
			return apiURL, key, dataDir
		}
	}
	t.Fatalf("dev server printed no API URL and key: %v", lines.Err())
	return "", "", ""
}

func TestDevServerServesTheWalkthrough(t *testing.T) {
	apiURL, key, dataDir := startDevServer(t, nil)

	res, err := http.Get(apiURL + "/healthz")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", res, err)
	}
	res.Body.Close()

	ext, pending := uuid.NewString(), uuid.NewString()
	for _, id := range []string{ext, pending} {
		req, _ := http.NewRequest(http.MethodPost, apiURL+"/entity", strings.NewReader(`{"externalId":"`+id+`","type":"INDIVIDUAL"}`))
		req.Header.Set("Authorization", "Bearer "+key)
		if code := status(t, req); code != http.StatusCreated {
			t.Fatalf("create entity: %d", code)
		}
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "batch.csv")
	fmt.Fprintf(fw, "externalId,shareToken\n%s,tok-dev\n%s,sim-pending-dev\n", ext, pending)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, apiURL+"/entity/kyc/import/batch", &body)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-Provider", "sumsub")
	req.Header.Set("Idempotency-Key", "walkthrough-1")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ BatchID string }
	json.NewDecoder(res.Body).Decode(&created)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d", res.StatusCode)
	}
	// The in-process worker imports it from the in-process simulator.
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, _ = http.NewRequest(http.MethodGet, apiURL+"/entity/kyc/import/batch/"+created.BatchID, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var batch struct{ Status string }
		json.NewDecoder(res.Body).Decode(&batch)
		res.Body.Close()
		if batch.Status == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch is %q after 20 s, want completed", batch.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The raw file landed in the embedded S3, on disk under DATA_DIR.
	matches, _ := filepath.Glob(filepath.Join(dataDir, "s3", "buckets", "kycbatch", "uploads", "*", "*.csv"))
	if len(matches) != 1 {
		t.Errorf("files under DATA_DIR/s3: %v, want the one upload", matches)
	}
	// The key is kept in DATA_DIR for the next start.
	if b, err := os.ReadFile(filepath.Join(dataDir, "dev-api-key")); err != nil || strings.TrimSpace(string(b)) != key {
		t.Errorf("dev-api-key file: %q, %v", b, err)
	}
	// The pending review completes later: the simulator's signed webhook to
	// the dev server's own /webhooks/sumsub approves the entity.
	for deadline := time.Now().Add(devWebhookDelay + 15*time.Second); ; time.Sleep(200 * time.Millisecond) {
		req, _ = http.NewRequest(http.MethodGet, apiURL+"/entity/"+pending, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ KYCStatus string }
		json.NewDecoder(res.Body).Decode(&e)
		res.Body.Close()
		if e.KYCStatus == "APPROVED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending entity is %q, want APPROVED by the simulator's webhook", e.KYCStatus)
		}
	}
}

func TestDevServerUsesDEV_API_KEY(t *testing.T) {
	want := auth.NewKey()
	apiURL, key, _ := startDevServer(t, map[string]string{"DEV_API_KEY": want})
	if key != want {
		t.Errorf("printed key %q, want DEV_API_KEY %q", key, want)
	}
	req, _ := http.NewRequest(http.MethodGet, apiURL+"/entity", nil)
	req.Header.Set("X-API-Key", want)
	if code := status(t, req); code != http.StatusOK {
		t.Errorf("GET /entity with DEV_API_KEY: %d", code)
	}
}

func TestDevServerExplainsUnreachableServices(t *testing.T) {
	tests := []struct {
		name, variable, value, want string
	}{
		{"PostgreSQL", "DATABASE_URL", "postgres://postgres@127.0.0.1:1/kycbatch?sslmode=disable", "cannot reach PostgreSQL at postgres://postgres@127.0.0.1:1/kycbatch?sslmode=disable (start it with: pg_ctlcluster"},
		{"Redis", "REDIS_URL", "redis://127.0.0.1:1/0", "cannot reach Redis at redis://127.0.0.1:1/0 (start it with: redis-server"},
		{"bad variable", "HTTP_ADDR", "nonsense", "HTTP_ADDR: want host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{
				"HTTP_ADDR": "127.0.0.1:0", "DEV_S3_ADDR": "127.0.0.1:0", "SUMSUB_SIM_ADDR": "127.0.0.1:0", "DATA_DIR": t.TempDir(),
				"DATABASE_URL": dbtest.URL(t), "REDIS_URL": redistest.URL(t),
				tt.variable: tt.value,
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := run(ctx, func(k string) string { return vars[k] }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run: %v\nwant an error containing %q", err, tt.want)
			}
		})
	}
}

func status(t *testing.T, req *http.Request) int {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	return res.StatusCode
}
