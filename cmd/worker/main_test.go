package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/database/dbtest"
	"github.com/kycbatch/kycbatch/internal/redistest"
	"github.com/kycbatch/kycbatch/internal/storage/s3local"
)

// TestWorkerProcessProbesAndSIGTERM runs the worker as a real process: its
// probes answer, and SIGTERM stops it cleanly (exit status 0).
func TestWorkerProcessProbesAndSIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "worker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	s3 := httptest.NewServer(s3local.InMemory())
	defer s3.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opsAddr := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+dbtest.URL(t), "REDIS_URL="+redistest.URL(t),
		"S3_ENDPOINT="+s3.URL, "S3_FORCE_PATH_STYLE=true", "S3_BUCKET=kycbatch",
		"AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y",
		"SUMSUB_APP_TOKEN=sbx:test", "SUMSUB_SECRET_KEY=secret", "SUMSUB_BASE_URL=http://127.0.0.1:1",
		"WORKER_METRICS_ADDR="+opsAddr, "SHUTDOWN_TIMEOUT=5s",
	)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()

	var status int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		res, err := http.Get("http://" + opsAddr + "/healthz")
		if err == nil {
			status = res.StatusCode
			res.Body.Close()
			break
		}
	}
	if status != http.StatusOK {
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

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("worker after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("worker still running 15 s after SIGTERM")
	}
}
