// Package config reads the configuration of kycbatch from environment
// variables, once, at start. Every bad value is reported, each with its
// variable's name; no secret is ever part of an error or of String.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/storage"
)

// Config is the configuration shared by the API, the worker and the dev server.
type Config struct {
	// HTTPAddr is where the API listens (HTTP_ADDR).
	HTTPAddr string
	// DatabaseURL is the PostgreSQL connection URL (DATABASE_URL).
	DatabaseURL string
	// RedisURL is the Redis URL of the Asynq queues (REDIS_URL).
	RedisURL string
	// S3 says where raw uploads and reports are kept (S3_ENDPOINT, S3_REGION,
	// S3_BUCKET, S3_FORCE_PATH_STYLE; credentials from the AWS default chain).
	S3 storage.Config
	// LogLevel is the lowest level logged (LOG_LEVEL: debug, info, warn, error).
	LogLevel slog.Level
}

// Defaults serve local development.
var Defaults = map[string]string{
	"HTTP_ADDR":           "127.0.0.1:8080",
	"DATABASE_URL":        "postgres://postgres@127.0.0.1:5432/kycbatch?sslmode=disable",
	"REDIS_URL":           "redis://127.0.0.1:6379/0",
	"S3_ENDPOINT":         "",
	"S3_REGION":           "us-east-1",
	"S3_BUCKET":           "kycbatch",
	"S3_FORCE_PATH_STYLE": "false",
	"LOG_LEVEL":           "info",
}

// Load reads the configuration through getenv (os.Getenv in production, a
// map in tests), falling back to Defaults for unset variables.
func Load(getenv func(string) string) (Config, error) {
	get := func(name string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return Defaults[name]
	}
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}

	c := Config{
		HTTPAddr:    get("HTTP_ADDR"),
		DatabaseURL: get("DATABASE_URL"),
		RedisURL:    get("REDIS_URL"),
		S3: storage.Config{
			Endpoint: get("S3_ENDPOINT"),
			Region:   get("S3_REGION"),
			Bucket:   get("S3_BUCKET"),
		},
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("HTTP_ADDR", "want host:port, got %q", c.HTTPAddr)
	}
	if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		bad("DATABASE_URL", "want postgres://user@host:port/database")
	}
	if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		bad("REDIS_URL", "want redis://host:port/db")
	}
	if c.S3.Endpoint != "" {
		if u, err := url.Parse(c.S3.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("S3_ENDPOINT", "want an http(s) URL, got %q", c.S3.Endpoint)
		}
	}
	var err error
	if c.S3.ForcePathStyle, err = strconv.ParseBool(get("S3_FORCE_PATH_STYLE")); err != nil {
		bad("S3_FORCE_PATH_STYLE", "want true or false, got %q", get("S3_FORCE_PATH_STYLE"))
	}
	if err := c.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL"))); err != nil {
		bad("LOG_LEVEL", "want debug, info, warn or error, got %q", get("LOG_LEVEL"))
	}
	return c, errors.Join(errs...)
}

// LogValue lets the configuration be logged at start without its secrets.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.String("database_url", database.Redact(c.DatabaseURL)),
		slog.String("redis_url", database.Redact(c.RedisURL)),
		slog.String("s3_endpoint", c.S3.Endpoint),
		slog.String("s3_region", c.S3.Region),
		slog.String("s3_bucket", c.S3.Bucket),
		slog.Bool("s3_force_path_style", c.S3.ForcePathStyle),
		slog.String("log_level", c.LogLevel.String()),
	)
}
