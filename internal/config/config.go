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
	"time"

	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/storage"
)

// Config is the configuration shared by the API, the worker and the dev server.
type Config struct {
	// HTTPAddr is where the API listens (HTTP_ADDR).
	HTTPAddr string
	// WorkerOpsAddr is where a worker serves /healthz and /readyz (WORKER_METRICS_ADDR).
	WorkerOpsAddr string
	// DatabaseURL is the PostgreSQL connection URL (DATABASE_URL).
	DatabaseURL string
	// RedisURL is the Redis URL of the Asynq queues (REDIS_URL).
	RedisURL string
	// S3 says where raw uploads and reports are kept (S3_ENDPOINT, S3_REGION,
	// S3_BUCKET, S3_FORCE_PATH_STYLE; credentials from the AWS default chain).
	S3 storage.Config
	// LogLevel is the lowest level logged (LOG_LEVEL: debug, info, warn, error).
	LogLevel slog.Level

	// Sumsub is how the worker reaches Sumsub and how fast it may call it.
	Sumsub Sumsub
	// BatchWindow is how many records of one batch may wait in the Sumsub
	// queue at once (BATCH_WINDOW), so that batches share the rate fairly;
	// the worker caps it at half a second of the rate limit.
	BatchWindow int
	// WorkerConcurrency is how many tasks one worker process runs at once (WORKER_CONCURRENCY).
	WorkerConcurrency int
	// ReconcileInterval is how often the reconciler re-enqueues what Redis
	// lost (RECONCILE_INTERVAL).
	ReconcileInterval time.Duration
	// Monitoring is the Asynq dashboard at /monitoring/.
	Monitoring Monitoring
	// ReportLinkTTL is how long a report's download link works (REPORT_LINK_TTL).
	ReportLinkTTL time.Duration
	// ShutdownTimeout is how long a stopping process lets running work finish (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// Webhooks is how events are sent to the businesses' webhook endpoints.
	Webhooks Webhooks
}

// Webhooks is the configuration of outgoing webhooks.
type Webhooks struct {
	// AllowPrivateURLs accepts endpoints on loopback, private, link-local and
	// other non-public addresses (WEBHOOK_ALLOW_PRIVATE_URLS): for development
	// and tests only, since a client could otherwise make us call into our network.
	AllowPrivateURLs bool
	// RetryBase is the wait before the first retry of a failed delivery
	// (WEBHOOK_RETRY_BASE); the whole schedule (5 s, 5 min … 24 h) scales with it.
	RetryBase time.Duration
}

// Monitoring is the configuration of the Asynq dashboard.
type Monitoring struct {
	// User and Password are the ops credentials of HTTP basic auth
	// (MONITORING_USER, MONITORING_PASSWORD); without both, no dashboard.
	User     string
	Password string
	// ReadOnly hides the dashboard's buttons that change tasks (MONITORING_READONLY).
	ReadOnly bool
	// PrometheusAddr is the Prometheus server whose data the dashboard charts (MONITORING_PROMETHEUS_ADDR).
	PrometheusAddr string
}

// Enabled reports whether the dashboard is mounted.
func (m Monitoring) Enabled() bool { return m.User != "" && m.Password != "" }

// Sumsub is the configuration of the Sumsub client.
type Sumsub struct {
	// BaseURL is Sumsub's API (SUMSUB_BASE_URL).
	BaseURL string
	// AppToken and SecretKey sign every request (SUMSUB_APP_TOKEN,
	// SUMSUB_SECRET_KEY); the worker needs both. Secrets: never logged.
	AppToken  string
	SecretKey string
	// RateLimit is the number of requests per second allowed to all worker
	// processes together (SUMSUB_RATE_LIMIT).
	RateLimit int
	// DefaultLevel is the level of records that name none (SUMSUB_DEFAULT_LEVEL);
	// empty: Sumsub's default level.
	DefaultLevel string
	// Timeout bounds one Sumsub request (SUMSUB_TIMEOUT).
	Timeout time.Duration
	// WebhookSecret checks the X-Payload-Digest of Sumsub's webhooks
	// (SUMSUB_WEBHOOK_SECRET); empty: POST /webhooks/sumsub is not mounted.
	// A secret: never logged.
	WebhookSecret string
}

// Defaults serve local development.
var Defaults = map[string]string{
	"HTTP_ADDR":           "127.0.0.1:8080",
	"WORKER_METRICS_ADDR": "127.0.0.1:9091",
	"DATABASE_URL":        "postgres://postgres@127.0.0.1:5432/kycbatch?sslmode=disable",
	"REDIS_URL":           "redis://127.0.0.1:6379/0",
	"S3_ENDPOINT":         "",
	"S3_REGION":           "us-east-1",
	"S3_BUCKET":           "kycbatch",
	"S3_FORCE_PATH_STYLE": "false",
	"LOG_LEVEL":           "info",
	"SUMSUB_BASE_URL":     "https://api.sumsub.com",
	"SUMSUB_RATE_LIMIT":   "10",
	"SUMSUB_TIMEOUT":      "10s",
	"BATCH_WINDOW":        "20",
	"WORKER_CONCURRENCY":  "20",
	"RECONCILE_INTERVAL":  "30s",
	"SHUTDOWN_TIMEOUT":    "30s",
	"REPORT_LINK_TTL":     "10m",
	"MONITORING_READONLY": "false",

	"WEBHOOK_ALLOW_PRIVATE_URLS": "false",
	"WEBHOOK_RETRY_BASE":         "5s",
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
		HTTPAddr:      get("HTTP_ADDR"),
		WorkerOpsAddr: get("WORKER_METRICS_ADDR"),
		DatabaseURL:   get("DATABASE_URL"),
		RedisURL:      get("REDIS_URL"),
		S3: storage.Config{
			Endpoint: get("S3_ENDPOINT"),
			Region:   get("S3_REGION"),
			Bucket:   get("S3_BUCKET"),
		},
	}
	for name, addr := range map[string]string{"HTTP_ADDR": c.HTTPAddr, "WORKER_METRICS_ADDR": c.WorkerOpsAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(name, "want host:port, got %q", addr)
		}
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
	c.Monitoring = Monitoring{User: get("MONITORING_USER"), Password: get("MONITORING_PASSWORD"), PrometheusAddr: get("MONITORING_PROMETHEUS_ADDR")}
	if c.Monitoring.ReadOnly, err = strconv.ParseBool(get("MONITORING_READONLY")); err != nil {
		bad("MONITORING_READONLY", "want true or false, got %q", get("MONITORING_READONLY"))
	}
	if (c.Monitoring.User == "") != (c.Monitoring.Password == "") {
		bad("MONITORING_USER", "set both MONITORING_USER and MONITORING_PASSWORD, or neither")
	}
	c.Sumsub = Sumsub{
		BaseURL:       strings.TrimSuffix(get("SUMSUB_BASE_URL"), "/"),
		AppToken:      get("SUMSUB_APP_TOKEN"),
		SecretKey:     get("SUMSUB_SECRET_KEY"),
		DefaultLevel:  get("SUMSUB_DEFAULT_LEVEL"),
		WebhookSecret: get("SUMSUB_WEBHOOK_SECRET"),
	}
	if u, err := url.Parse(c.Sumsub.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("SUMSUB_BASE_URL", "want an http(s) URL, got %q", c.Sumsub.BaseURL)
	}
	positive := func(name string, max int) int {
		n, err := strconv.Atoi(get(name))
		if err != nil || n < 1 || n > max {
			bad(name, "want a whole number from 1 to %d, got %q", max, get(name))
		}
		return n
	}
	c.Sumsub.RateLimit = positive("SUMSUB_RATE_LIMIT", 100000)
	c.BatchWindow = positive("BATCH_WINDOW", 10000)
	c.WorkerConcurrency = positive("WORKER_CONCURRENCY", 10000)
	duration := func(name string) time.Duration {
		d, err := time.ParseDuration(get(name))
		if err != nil || d <= 0 {
			bad(name, "want a positive duration such as 30s, got %q", get(name))
		}
		return d
	}
	c.Sumsub.Timeout = duration("SUMSUB_TIMEOUT")
	c.ReconcileInterval = duration("RECONCILE_INTERVAL")
	c.ShutdownTimeout = duration("SHUTDOWN_TIMEOUT")
	if c.ReportLinkTTL = duration("REPORT_LINK_TTL"); c.ReportLinkTTL > 7*24*time.Hour {
		bad("REPORT_LINK_TTL", "S3 presigned links last at most 7 days, got %s", c.ReportLinkTTL)
	}
	if c.Webhooks.AllowPrivateURLs, err = strconv.ParseBool(get("WEBHOOK_ALLOW_PRIVATE_URLS")); err != nil {
		bad("WEBHOOK_ALLOW_PRIVATE_URLS", "want true or false, got %q", get("WEBHOOK_ALLOW_PRIVATE_URLS"))
	}
	c.Webhooks.RetryBase = duration("WEBHOOK_RETRY_BASE")
	return c, errors.Join(errs...)
}

// CheckWorker reports what the worker needs that the API does not.
func (c Config) CheckWorker() error {
	var errs []error
	if c.Sumsub.AppToken == "" {
		errs = append(errs, errors.New("SUMSUB_APP_TOKEN: required by the worker"))
	}
	if c.Sumsub.SecretKey == "" {
		errs = append(errs, errors.New("SUMSUB_SECRET_KEY: required by the worker"))
	}
	return errors.Join(errs...)
}

// LogValue lets the configuration be logged at start without its secrets.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.String("worker_metrics_addr", c.WorkerOpsAddr),
		slog.String("database_url", database.Redact(c.DatabaseURL)),
		slog.String("redis_url", database.Redact(c.RedisURL)),
		slog.String("s3_endpoint", c.S3.Endpoint),
		slog.String("s3_region", c.S3.Region),
		slog.String("s3_bucket", c.S3.Bucket),
		slog.Bool("s3_force_path_style", c.S3.ForcePathStyle),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("sumsub_base_url", c.Sumsub.BaseURL),
		slog.Bool("sumsub_app_token_set", c.Sumsub.AppToken != ""),
		slog.Bool("sumsub_secret_key_set", c.Sumsub.SecretKey != ""),
		slog.Int("sumsub_rate_limit", c.Sumsub.RateLimit),
		slog.String("sumsub_default_level", c.Sumsub.DefaultLevel),
		slog.Duration("sumsub_timeout", c.Sumsub.Timeout),
		slog.Bool("sumsub_webhook_secret_set", c.Sumsub.WebhookSecret != ""),
		slog.Int("batch_window", c.BatchWindow),
		slog.Int("worker_concurrency", c.WorkerConcurrency),
		slog.Duration("reconcile_interval", c.ReconcileInterval),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Duration("report_link_ttl", c.ReportLinkTTL),
		slog.Bool("monitoring", c.Monitoring.Enabled()),
		slog.Bool("monitoring_readonly", c.Monitoring.ReadOnly),
		slog.Bool("webhook_allow_private_urls", c.Webhooks.AllowPrivateURLs),
		slog.Duration("webhook_retry_base", c.Webhooks.RetryBase),
	)
}
