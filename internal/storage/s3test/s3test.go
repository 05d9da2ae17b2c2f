// Package s3test runs a real S3-protocol server in memory for tests, so
// storage code is exercised over HTTP with the real AWS SDK.
package s3test

import (
	"context"
	"net/http/httptest"
	"testing"

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
