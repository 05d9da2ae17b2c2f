// Package s3test runs a real S3-protocol server in memory for tests, so
// storage code is exercised over HTTP with the real AWS SDK.
package s3test

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/storage/s3local"
)

// Store starts an in-memory S3 server for the test and returns a store on a
// fresh bucket of it; the server stops when the test ends.
func Store(tb testing.TB) *storage.Store {
	tb.Helper()
	srv := httptest.NewServer(s3local.InMemory())
	tb.Cleanup(srv.Close)
	st, err := storage.New(context.Background(), s3local.Config(srv.URL, "kycbatch-test"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.EnsureBucket(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return st
}

// Versitygw starts versitygw, an S3 server that checks signatures and link
// expiry, on a temporary directory and returns a store on a fresh bucket.
// Without the binary (make test installs it) the test fails in CI and is
// skipped elsewhere.
func Versitygw(t testing.TB) *storage.Store {
	t.Helper()
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		bin = filepath.Join(strings.TrimSpace(string(gopath)), "bin", "versitygw")
		if _, serr := os.Stat(bin); serr != nil {
			if os.Getenv("CI") == "" {
				t.Skip("versitygw not installed (make test installs it)")
			}
			t.Fatal("versitygw not installed: make test installs it")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	const access, secret = "kycbatchtest", "kycbatch-test-secret-key"
	cmd := exec.Command(bin, "--port", addr, "--access", access, "--secret", secret, "posix", t.TempDir())
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatal("versitygw did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, err := storage.New(context.Background(), storage.Config{
		Endpoint: "http://" + addr, Region: "us-east-1", Bucket: "kycbatch-reports", ForcePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(access, secret, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}
