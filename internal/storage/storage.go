// Package storage keeps files in S3 (AWS S3, MinIO, versitygw or any S3-protocol
// server): raw uploads and report CSVs, always with server-side encryption requested.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Config says where the bucket is. Credentials come from the AWS default chain
// (environment, shared files, instance roles) unless Credentials is set.
type Config struct {
	Endpoint       string // empty: AWS's own endpoint for Region
	Region         string
	Bucket         string
	ForcePathStyle bool                    // needed by MinIO, versitygw and most non-AWS servers
	Credentials    aws.CredentialsProvider // nil: the AWS default chain
	// SSE is the server-side encryption every object is written with:
	// SSEAES256 (S3's own keys; the default when empty) or SSEKMS.
	SSE string
	// SSEKMSKeyID is the KMS key of SSEKMS; empty: the bucket's or the
	// account's default key.
	SSEKMSKeyID string
}

// The server-side encryptions Config.SSE takes.
const (
	SSEAES256 = "AES256"
	SSEKMS    = "aws:kms"
)

// Store puts and deletes objects in one bucket.
type Store struct {
	client    *s3.Client
	uploader  *transfermanager.Client
	presigner *s3.PresignClient
	bucket    string
	sse       string
	kmsKey    *string // nil: no key named
}

// New returns a Store for cfg. It does not contact the server.
func New(ctx context.Context, cfg Config) (*Store, error) {
	opts := []func(*config.LoadOptions) error{config.WithRegion(cfg.Region)}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.ForcePathStyle
	})
	uploader := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = 5 << 20
		o.Concurrency = 1
	})
	st := &Store{client: client, uploader: uploader, presigner: s3.NewPresignClient(client), bucket: cfg.Bucket, sse: SSEAES256}
	switch cfg.SSE {
	case "", SSEAES256:
	case SSEKMS:
		st.sse = SSEKMS
		if cfg.SSEKMSKeyID != "" {
			st.kmsKey = aws.String(cfg.SSEKMSKeyID)
		}
	default:
		return nil, fmt.Errorf("server-side encryption %q: want %s or %s", cfg.SSE, SSEAES256, SSEKMS)
	}
	return st, nil
}

// Put stores body under key with server-side encryption requested. body is
// seekable so that the SDK can sign its hash and retry over plain HTTP too.
func (s *Store) Put(ctx context.Context, key string, body io.ReadSeeker, contentType string, metadata map[string]string) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:               aws.String(s.bucket),
		Key:                  aws.String(key),
		Body:                 body,
		ContentType:          aws.String(contentType),
		Metadata:             metadata,
		ServerSideEncryption: types.ServerSideEncryption(s.sse),
		SSEKMSKeyId:          s.kmsKey,
	})
	if err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// Upload streams body to key as a multipart upload, with server-side
// encryption requested, holding one part (5 MiB, S3's smallest) in memory at
// a time whatever the object's size.
func (s *Store) Upload(ctx context.Context, key string, body io.Reader, contentType string) error {
	_, err := s.uploader.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket:               aws.String(s.bucket),
		Key:                  aws.String(key),
		Body:                 body,
		ContentType:          aws.String(contentType),
		ServerSideEncryption: tmtypes.ServerSideEncryption(s.sse),
		SSEKMSKeyID:          s.kmsKey,
	})
	if err != nil {
		return fmt.Errorf("upload s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// PresignGet returns a link that downloads key without credentials until ttl has passed.
func (s *Store) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	req, err := s.presigner.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)},
		s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("presign s3://%s/%s: %w", s.bucket, key, err)
	}
	return req.URL, nil
}

// Delete removes key; removing a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("delete s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// Get opens the object under key; the caller closes it.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("get s3://%s/%s: %w", s.bucket, key, err)
	}
	return out.Body, nil
}

// Keys lists the keys under prefix, for maintenance and tests.
func (s *Store) Keys(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", s.bucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// EnsureBucket creates the bucket when it does not exist. The dev server and
// tests call it; production buckets are made by their operators.
func (s *Store) EnsureBucket(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)}); err == nil {
		return nil
	}
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("create bucket %s: %w", s.bucket, err)
	}
	return nil
}

// Ping checks that the bucket answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)}); err != nil {
		return fmt.Errorf("head bucket %s: %w", s.bucket, err)
	}
	return nil
}
