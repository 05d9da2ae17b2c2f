package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/storage/s3local"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/proctest"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
)

// TestWorkerProcessProbesAndSIGTERM runs the worker as a real process: its
// probes answer, and SIGTERM stops it cleanly (exit status 0).
func TestWorkerProcessProbesAndSIGTERM(t *testing.T) {
	s3 := httptest.NewServer(s3local.InMemory())
	defer s3.Close()
	opsAddr := proctest.FreeAddr(t)
	p := proctest.Start(t,
		"DATABASE_URL="+dbtest.URL(t), "REDIS_URL="+redistest.URL(t),
		"S3_ENDPOINT="+s3.URL, "S3_FORCE_PATH_STYLE=true", "S3_BUCKET=kycbatch",
		"AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y",
		"SUMSUB_APP_TOKEN=sbx:test", "SUMSUB_SECRET_KEY=secret", "SUMSUB_BASE_URL=http://127.0.0.1:1",
		"WORKER_METRICS_ADDR="+opsAddr, "SHUTDOWN_TIMEOUT=5s",
	)
	if status := proctest.WaitHTTP(t, "http://"+opsAddr+"/healthz"); status != http.StatusOK {
		t.Fatalf("healthz: %d", status)
	}
	// The bucket does not exist: S3 is not ready, and the probe says so.
	res, err := http.Get("http://" + opsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz without a bucket: %d, want 503", res.StatusCode)
	}

	res, err = http.Get("http://" + opsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{"kycbatch_rate_limiter_wait_seconds_count 0", "go_goroutines "} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("worker /metrics lacks %q", want)
		}
	}

	p.Terminate(t)
	p.CheckCleanExit(t, 15*time.Second)
}
