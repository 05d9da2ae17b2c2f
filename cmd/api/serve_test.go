package main

import (
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/database/dbtest"
	"github.com/kycbatch/kycbatch/internal/redistest"
	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/storage/s3local"
)

// TestServeDrainsOnSIGTERM runs the API as a real process, starts a slow
// upload, sends SIGTERM while it is in flight, and checks that the upload
// still succeeds, that new connections are refused, and that the process
// exits with status 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "api")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx := context.Background()
	dbURL := dbtest.URL(t)
	s3 := httptest.NewServer(s3local.InMemory())
	defer s3.Close()
	st, err := storage.New(ctx, s3local.Config(s3.URL, "kycbatch"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	pool, err := database.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	keys := auth.NewStore(pool)
	business, err := keys.EnsureBusiness(ctx, "drain")
	if err != nil {
		t.Fatal(err)
	}
	key := auth.NewKey()
	if err := keys.AddKey(ctx, business, key); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "HTTP_ADDR="+addr, "DATABASE_URL="+dbURL, "REDIS_URL="+redistest.URL(t),
		"S3_ENDPOINT="+s3.URL, "S3_FORCE_PATH_STYLE=true", "S3_BUCKET=kycbatch",
		"AWS_ACCESS_KEY_ID=kycbatch-dev", "AWS_SECRET_ACCESS_KEY=kycbatch-dev-secret")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	for i := 0; ; i++ {
		if res, err := http.Get("http://" + addr + "/healthz"); err == nil {
			res.Body.Close()
			break
		}
		if i > 200 {
			t.Fatal("the API did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A slow upload: the file's second half is sent after SIGTERM.
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/entity/kyc/import/batch", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-API-Key", key)
	req.Header.Set("X-Provider", "sumsub")
	req.Header.Set("Idempotency-Key", "drain")
	status := make(chan int, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("in-flight upload: %v", err)
			status <- 0
			return
		}
		res.Body.Close()
		status <- res.StatusCode
	}()
	fw, _ := mw.CreateFormFile("file", "batch.csv")
	fmt.Fprintf(fw, "externalId,shareToken\n%s,tok-1\n", uuid.New())
	time.Sleep(200 * time.Millisecond) // the request is being served

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the API still accepts connections after SIGTERM")
	}
	fmt.Fprintf(fw, "%s,tok-2\n", uuid.New())
	mw.Close()
	pw.Close()

	if code := <-status; code != http.StatusCreated {
		t.Errorf("in-flight upload answered %d, want 201", code)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("api after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("api still running 15 s after SIGTERM")
	}
}
