package main

import (
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/storage/s3local"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/proctest"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
)

// TestServeDrainsOnSIGTERM runs the API as a real process, starts a slow
// upload, sends SIGTERM while it is in flight, and checks that the upload
// still succeeds, that new connections are refused, and that the process
// exits with status 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
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
	pool, err := database.Open(ctx, dbURL, 0)
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

	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, "HTTP_ADDR="+addr, "DATABASE_URL="+dbURL, "REDIS_URL="+redistest.URL(t),
		"S3_ENDPOINT="+s3.URL, "S3_FORCE_PATH_STYLE=true", "S3_BUCKET=kycbatch",
		"AWS_ACCESS_KEY_ID=kycbatch-dev", "AWS_SECRET_ACCESS_KEY=kycbatch-dev-secret")
	proctest.WaitHTTP(t, "http://"+addr+"/healthz")

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

	p.Terminate(t)
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
	p.CheckCleanExit(t, 15*time.Second)
}
