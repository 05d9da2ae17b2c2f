// Package s3local is an S3-protocol server for development and tests
// (gofakes3), on a directory or in memory. It checks no signature: tests that
// must prove links are signed use versitygw instead. Production never uses it.
package s3local

import (
	"fmt"
	"net/http"
	"os"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/spf13/afero"

	"github.com/kycbatch/kycbatch/internal/storage"
)

// OnDisk returns an S3 server keeping its buckets under dir.
func OnDisk(dir string) (http.Handler, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("S3 directory: %w", err)
	}
	backend, err := s3afero.MultiBucket(afero.NewBasePathFs(afero.NewOsFs(), dir))
	if err != nil {
		return nil, fmt.Errorf("S3 on %s: %w", dir, err)
	}
	return gofakes3.New(backend).Server(), nil
}

// InMemory returns an S3 server keeping everything in memory.
func InMemory() http.Handler {
	return gofakes3.New(s3mem.New()).Server()
}

// Config is the storage configuration of bucket on the server at endpoint.
// The credentials are fixed: the server accepts any.
func Config(endpoint, bucket string) storage.Config {
	return storage.Config{
		Endpoint:       endpoint,
		Region:         "us-east-1",
		Bucket:         bucket,
		ForcePathStyle: true,
		Credentials:    credentials.NewStaticCredentialsProvider("kycbatch-dev", "kycbatch-dev-secret", ""),
	}
}
