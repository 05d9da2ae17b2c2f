// Package config reads the configuration of each kycbatch binary from
// environment variables, once, at start: API for cmd/api, Worker for
// cmd/worker (the dev server reads both). Every bad value is reported, each
// with its variable's name; no secret is ever part of an error or of what
// the configuration logs.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/redisconn"
	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/tracing"
)

// Common is what every process reads: where PostgreSQL, Redis and S3 are,
// how to log and how long to take to stop.
type Common struct {
	// DatabaseURL is the PostgreSQL connection URL (DATABASE_URL).
	DatabaseURL string
	// RedisURL is the Redis of the queues, the schedule and the rate limiter
	// (REDIS_URL): one server, or Sentinels and the name of the primary they
	// watch (redisconn.Parse).
	RedisURL string
	// S3 says where raw uploads and reports are kept (S3_ENDPOINT, S3_REGION,
	// S3_BUCKET, S3_FORCE_PATH_STYLE; credentials from the AWS default chain).
	S3 storage.Config
	// LogLevel is the lowest level logged (LOG_LEVEL: debug, info, warn, error).
	LogLevel slog.Level
	// ShutdownTimeout is how long a stopping process lets running work
	// finish: HTTP requests, and a worker's tasks (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// UploadRetention is how long a batch's raw upload is kept in S3 once
	// the batch is final (UPLOAD_RETENTION; 0: deleted at once).
	UploadRetention time.Duration
	// Tracing says where OpenTelemetry traces go, if anywhere: the OTLP
	// endpoint of OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or of
	// OTEL_EXPORTER_OTLP_ENDPOINT; none (off) when neither is set, or
	// OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none. May hold
	// credentials: logged redacted.
	Tracing tracing.Config
}

// API is the configuration of the API server.
type API struct {
	Common
	// DatabaseMigrateURL is where `api migrate` connects
	// (DATABASE_MIGRATE_URL; empty: DATABASE_URL): a direct connection to
	// PostgreSQL when DATABASE_URL is PgBouncer's, whose transaction pooling
	// keeps no session lock. May hold a password: logged redacted.
	DatabaseMigrateURL string
	// HTTPAddr is where the API listens (HTTP_ADDR).
	HTTPAddr string
	// RateLimit is the requests per second each business may send to the
	// authenticated routes, for all API processes together, with a burst
	// of twice as many (API_RATE_LIMIT).
	RateLimit int
	// SumsubRateLimit is Sumsub's rate (SUMSUB_RATE_LIMIT), which paces every
	// batch: the status estimates completion from it.
	SumsubRateLimit int
	// SumsubWebhookSecret checks the X-Payload-Digest of Sumsub's webhooks
	// (SUMSUB_WEBHOOK_SECRET); empty: POST /webhooks/sumsub is not mounted.
	// A secret: never logged.
	SumsubWebhookSecret string
	// ReportLinkTTL is how long a report's download link works (REPORT_LINK_TTL).
	ReportLinkTTL time.Duration
	// UploadMaxConcurrent is how many uploads of one business one API
	// process receives at once (UPLOAD_MAX_CONCURRENT_PER_BUSINESS).
	UploadMaxConcurrent int
	// UploadMaxInflightBytes is how many bytes of uploads one API process
	// receives at once, all businesses together (UPLOAD_MAX_INFLIGHT_BYTES).
	UploadMaxInflightBytes int64
	// ReportMaxPending is how many reports one business may have pending
	// or processing (REPORT_MAX_PENDING_PER_BUSINESS).
	ReportMaxPending int
	// AllowPrivateWebhookURLs accepts webhook endpoints on loopback, private,
	// link-local and other non-public addresses (WEBHOOK_ALLOW_PRIVATE_URLS):
	// for development and tests only, since a client could otherwise make us
	// call into our network.
	AllowPrivateWebhookURLs bool
	// Monitoring is the Asynq dashboard at /monitoring/.
	Monitoring Monitoring
}

// Worker is the configuration of a worker process.
type Worker struct {
	Common
	// MetricsAddr is where the worker serves /metrics, /healthz and /readyz (WORKER_METRICS_ADDR).
	MetricsAddr string
	// Sumsub is how the worker reaches Sumsub and how fast it may call it.
	Sumsub Sumsub
	// Concurrency is how many Sumsub calls, and how many other tasks, one
	// worker process runs at once (WORKER_CONCURRENCY).
	Concurrency int
	// ReconcileInterval is how often the reconciler re-enqueues what Redis
	// lost (RECONCILE_INTERVAL).
	ReconcileInterval time.Duration
	// ReportLinkTTL is how long the link in a report's webhook event works (REPORT_LINK_TTL).
	ReportLinkTTL time.Duration
	// Webhooks is how events are sent to the businesses' webhook endpoints.
	Webhooks Webhooks
	// RecordTaskRetention is how long a finished record task stays in the
	// dashboard's Completed list, with its result (RECORD_TASK_RETENTION;
	// 0: not kept).
	RecordTaskRetention time.Duration
}

// Sumsub is the configuration of the Sumsub client.
type Sumsub struct {
	// BaseURL is Sumsub's API (SUMSUB_BASE_URL).
	BaseURL string
	// AppToken and SecretKey sign every request (SUMSUB_APP_TOKEN,
	// SUMSUB_SECRET_KEY), both required. Secrets: never logged.
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
	// ProbeInterval is the longest wait between two probes of Sumsub while
	// the circuit breaker is open (SUMSUB_PROBE_INTERVAL): after an outage
	// ends, records are sent again within it.
	ProbeInterval time.Duration
}

// Webhooks is the configuration of outgoing webhook deliveries.
type Webhooks struct {
	// AllowPrivateURLs lets deliveries connect to non-public addresses
	// (WEBHOOK_ALLOW_PRIVATE_URLS; see API.AllowPrivateWebhookURLs).
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

// Defaults serve local development.
var Defaults = map[string]string{
	"HTTP_ADDR":                          "127.0.0.1:8080",
	"API_RATE_LIMIT":                     "100",
	"REPORT_MAX_PENDING_PER_BUSINESS":    "10",
	"UPLOAD_MAX_CONCURRENT_PER_BUSINESS": "4",
	"UPLOAD_MAX_INFLIGHT_BYTES":          "67108864",
	"WORKER_METRICS_ADDR":                "127.0.0.1:9091",
	"DATABASE_URL":                       "postgres://postgres@127.0.0.1:5432/kycbatch?sslmode=disable",
	"REDIS_URL":                          "redis://127.0.0.1:6379/0",
	"S3_ENDPOINT":                        "",
	"S3_REGION":                          "us-east-1",
	"S3_BUCKET":                          "kycbatch",
	"S3_FORCE_PATH_STYLE":                "false",
	"LOG_LEVEL":                          "info",
	"SHUTDOWN_TIMEOUT":                   "30s",
	"UPLOAD_RETENTION":                   "168h",
	"S3_SSE":                             "AES256",
	"SUMSUB_BASE_URL":                    "https://api.sumsub.com",
	"SUMSUB_RATE_LIMIT":                  "10",
	"SUMSUB_TIMEOUT":                     "10s",
	"SUMSUB_PROBE_INTERVAL":              "30s",
	"WORKER_CONCURRENCY":                 "20",
	"RECONCILE_INTERVAL":                 "30s",
	"RECORD_TASK_RETENTION":              "1h",
	"REPORT_LINK_TTL":                    "10m",
	"MONITORING_READONLY":                "false",

	"WEBHOOK_ALLOW_PRIVATE_URLS": "false",
	"WEBHOOK_RETRY_BASE":         "5s",
}

// LoadAPI reads the API's configuration through getenv (os.Getenv in
// production, a map in tests), falling back to Defaults for unset variables.
func LoadAPI(getenv func(string) string) (API, error) {
	r := reader{getenv: getenv}
	c := API{
		Common:                  r.common(),
		HTTPAddr:                r.addr("HTTP_ADDR"),
		RateLimit:               r.positive("API_RATE_LIMIT", 1000000),
		SumsubRateLimit:         r.positive("SUMSUB_RATE_LIMIT", 100000),
		SumsubWebhookSecret:     r.get("SUMSUB_WEBHOOK_SECRET"),
		ReportLinkTTL:           r.linkTTL(),
		ReportMaxPending:        r.positive("REPORT_MAX_PENDING_PER_BUSINESS", 10000),
		UploadMaxConcurrent:     r.positive("UPLOAD_MAX_CONCURRENT_PER_BUSINESS", 10000),
		UploadMaxInflightBytes:  int64(r.positive("UPLOAD_MAX_INFLIGHT_BYTES", 1<<40)),
		AllowPrivateWebhookURLs: r.boolean("WEBHOOK_ALLOW_PRIVATE_URLS"),
		Monitoring: Monitoring{
			User: r.get("MONITORING_USER"), Password: r.get("MONITORING_PASSWORD"),
			ReadOnly: r.boolean("MONITORING_READONLY"), PrometheusAddr: r.get("MONITORING_PROMETHEUS_ADDR"),
		},
	}
	c.DatabaseMigrateURL = cmp.Or(r.get("DATABASE_MIGRATE_URL"), c.DatabaseURL)
	r.postgresURL("DATABASE_MIGRATE_URL", c.DatabaseMigrateURL)
	if (c.Monitoring.User == "") != (c.Monitoring.Password == "") {
		r.bad("MONITORING_USER", "set both MONITORING_USER and MONITORING_PASSWORD, or neither")
	}
	return c, r.err()
}

// LoadWorker reads a worker's configuration as LoadAPI does the API's.
func LoadWorker(getenv func(string) string) (Worker, error) {
	r := reader{getenv: getenv}
	c := Worker{
		Common:      r.common(),
		MetricsAddr: r.addr("WORKER_METRICS_ADDR"),
		Sumsub: Sumsub{
			BaseURL:       strings.TrimSuffix(r.get("SUMSUB_BASE_URL"), "/"),
			AppToken:      r.required("SUMSUB_APP_TOKEN"),
			SecretKey:     r.required("SUMSUB_SECRET_KEY"),
			RateLimit:     r.positive("SUMSUB_RATE_LIMIT", 100000),
			DefaultLevel:  r.get("SUMSUB_DEFAULT_LEVEL"),
			Timeout:       r.duration("SUMSUB_TIMEOUT"),
			ProbeInterval: r.duration("SUMSUB_PROBE_INTERVAL"),
		},
		Concurrency:       r.positive("WORKER_CONCURRENCY", 10000),
		ReconcileInterval: r.duration("RECONCILE_INTERVAL"),
		ReportLinkTTL:     r.linkTTL(),
		Webhooks: Webhooks{
			AllowPrivateURLs: r.boolean("WEBHOOK_ALLOW_PRIVATE_URLS"),
			RetryBase:        r.duration("WEBHOOK_RETRY_BASE"),
		},
		RecordTaskRetention: r.nonNegativeDuration("RECORD_TASK_RETENTION"),
	}
	if u, err := url.Parse(c.Sumsub.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.bad("SUMSUB_BASE_URL", "want an http(s) URL, got %q", c.Sumsub.BaseURL)
	}
	return c, r.err()
}

// LogValue lets the configuration be logged at start without its secrets.
func (c API) LogValue() slog.Value {
	return slog.GroupValue(append(c.Common.attrs(),
		slog.String("database_migrate_url", database.Redact(c.DatabaseMigrateURL)),
		slog.String("http_addr", c.HTTPAddr),
		slog.Int("api_rate_limit", c.RateLimit),
		slog.Int("sumsub_rate_limit", c.SumsubRateLimit),
		slog.Bool("sumsub_webhook_secret_set", c.SumsubWebhookSecret != ""),
		slog.String("report_link_ttl", c.ReportLinkTTL.String()),
		slog.Int("report_max_pending_per_business", c.ReportMaxPending),
		slog.Int("upload_max_concurrent_per_business", c.UploadMaxConcurrent),
		slog.Int64("upload_max_inflight_bytes", c.UploadMaxInflightBytes),
		slog.Bool("webhook_allow_private_urls", c.AllowPrivateWebhookURLs),
		slog.Bool("monitoring", c.Monitoring.Enabled()),
		slog.Bool("monitoring_readonly", c.Monitoring.ReadOnly),
	)...)
}

// LogValue lets the configuration be logged at start without its secrets.
// An empty MetricsAddr (nothing listens there) is left out.
func (c Worker) LogValue() slog.Value {
	attrs := c.Common.attrs()
	if c.MetricsAddr != "" {
		attrs = append(attrs, slog.String("worker_metrics_addr", c.MetricsAddr))
	}
	return slog.GroupValue(append(attrs,
		slog.String("sumsub_base_url", database.Redact(c.Sumsub.BaseURL)),
		slog.Bool("sumsub_app_token_set", c.Sumsub.AppToken != ""),
		slog.Bool("sumsub_secret_key_set", c.Sumsub.SecretKey != ""),
		slog.Int("sumsub_rate_limit", c.Sumsub.RateLimit),
		slog.String("sumsub_default_level", c.Sumsub.DefaultLevel),
		slog.String("sumsub_timeout", c.Sumsub.Timeout.String()),
		slog.String("sumsub_probe_interval", c.Sumsub.ProbeInterval.String()),
		slog.Int("worker_concurrency", c.Concurrency),
		slog.String("reconcile_interval", c.ReconcileInterval.String()),
		slog.String("report_link_ttl", c.ReportLinkTTL.String()),
		slog.Bool("webhook_allow_private_urls", c.Webhooks.AllowPrivateURLs),
		slog.String("webhook_retry_base", c.Webhooks.RetryBase.String()),
		slog.String("record_task_retention", c.RecordTaskRetention.String()),
	)...)
}

func (c Common) attrs() []slog.Attr {
	return []slog.Attr{
		slog.String("database_url", database.Redact(c.DatabaseURL)),
		slog.String("redis_url", database.Redact(c.RedisURL)),
		slog.String("s3_endpoint", database.Redact(c.S3.Endpoint)),
		slog.String("s3_region", c.S3.Region),
		slog.String("s3_bucket", c.S3.Bucket),
		slog.Bool("s3_force_path_style", c.S3.ForcePathStyle),
		slog.String("s3_sse", c.S3.SSE),
		slog.Bool("s3_sse_kms_key_id_set", c.S3.SSEKMSKeyID != ""),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("shutdown_timeout", c.ShutdownTimeout.String()),
		slog.String("upload_retention", c.UploadRetention.String()),
		slog.String("otel_traces_endpoint", database.Redact(c.Tracing.Endpoint)),
	}
}

// reader reads variables, collecting one error per bad value.
type reader struct {
	getenv func(string) string
	errs   []error
}

func (r *reader) err() error { return errors.Join(r.errs...) }

func (r *reader) bad(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
}

// get returns the variable, or its default when it is unset or blank.
func (r *reader) get(name string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return Defaults[name]
}

func (r *reader) required(name string) string {
	v := r.get(name)
	if v == "" {
		r.bad(name, "required")
	}
	return v
}

func (r *reader) addr(name string) string {
	v := r.get(name)
	if _, _, err := net.SplitHostPort(v); err != nil {
		r.bad(name, "want host:port, got %q", v)
	}
	return v
}

func (r *reader) positive(name string, max int) int {
	n, err := strconv.Atoi(r.get(name))
	if err != nil || n < 1 || n > max {
		r.bad(name, "want a whole number from 1 to %d, got %q", max, r.get(name))
	}
	return n
}

func (r *reader) duration(name string) time.Duration {
	d, err := time.ParseDuration(r.get(name))
	if err != nil || d <= 0 {
		r.bad(name, "want a positive duration such as 30s, got %q", r.get(name))
	}
	return d
}

func (r *reader) nonNegativeDuration(name string) time.Duration {
	d, err := time.ParseDuration(r.get(name))
	if err != nil || d < 0 {
		r.bad(name, "want a duration such as 168h, or 0, got %q", r.get(name))
	}
	return d
}

func (r *reader) boolean(name string) bool {
	b, err := strconv.ParseBool(r.get(name))
	if err != nil {
		r.bad(name, "want true or false, got %q", r.get(name))
	}
	return b
}

func (r *reader) linkTTL() time.Duration {
	d := r.duration("REPORT_LINK_TTL")
	if d > 7*24*time.Hour {
		r.bad("REPORT_LINK_TTL", "S3 presigned links last at most 7 days, got %s", d)
	}
	return d
}

// postgresURL checks that the variable name holds a PostgreSQL URL.
func (r *reader) postgresURL(name, value string) {
	if u, err := url.Parse(value); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		r.bad(name, "want postgres://user@host:port/database")
	}
}

func (r *reader) common() Common {
	c := Common{
		DatabaseURL: r.get("DATABASE_URL"),
		RedisURL:    r.get("REDIS_URL"),
		S3: storage.Config{
			Endpoint:       r.get("S3_ENDPOINT"),
			Region:         r.get("S3_REGION"),
			Bucket:         r.get("S3_BUCKET"),
			ForcePathStyle: r.boolean("S3_FORCE_PATH_STYLE"),
			SSE:            r.get("S3_SSE"),
			SSEKMSKeyID:    r.get("S3_SSE_KMS_KEY_ID"),
		},
		ShutdownTimeout: r.duration("SHUTDOWN_TIMEOUT"),
		UploadRetention: r.nonNegativeDuration("UPLOAD_RETENTION"),
	}
	r.postgresURL("DATABASE_URL", c.DatabaseURL)
	if _, err := redisconn.Parse(c.RedisURL); err != nil {
		r.bad("REDIS_URL", "%v", err)
	}
	if c.S3.SSE != storage.SSEAES256 && c.S3.SSE != storage.SSEKMS {
		r.bad("S3_SSE", "want %s or %s, got %q", storage.SSEAES256, storage.SSEKMS, c.S3.SSE)
	}
	if c.S3.SSEKMSKeyID != "" && c.S3.SSE != storage.SSEKMS {
		r.bad("S3_SSE_KMS_KEY_ID", "a KMS key needs S3_SSE=%s", storage.SSEKMS)
	}
	if c.S3.Endpoint != "" {
		if u, err := url.Parse(c.S3.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			r.bad("S3_ENDPOINT", "want an http(s) URL, got %q", c.S3.Endpoint)
		}
	}
	c.Tracing = r.tracing()
	if err := c.LogLevel.UnmarshalText([]byte(r.get("LOG_LEVEL"))); err != nil {
		r.bad("LOG_LEVEL", "want debug, info, warn or error, got %q", r.get("LOG_LEVEL"))
	}
	return c
}

// tracing reads the OpenTelemetry variables that decide whether and where
// traces go. Only OTLP over HTTP is built in (the default protocol of the
// specification): another protocol or exporter is a clear error rather
// than traces that silently go nowhere.
func (r *reader) tracing() tracing.Config {
	if b, err := strconv.ParseBool(cmp.Or(r.get("OTEL_SDK_DISABLED"), "false")); err != nil {
		r.bad("OTEL_SDK_DISABLED", "want true or false, got %q", r.get("OTEL_SDK_DISABLED"))
	} else if b {
		return tracing.Config{}
	}
	switch e := r.get("OTEL_TRACES_EXPORTER"); e {
	case "", "otlp":
	case "none":
		return tracing.Config{}
	default:
		r.bad("OTEL_TRACES_EXPORTER", "want otlp or none, got %q", e)
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := r.get(name); p != "" && p != "http/protobuf" {
			r.bad(name, "only http/protobuf is built in, got %q", p)
		}
	}
	name, endpoint := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", r.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		name, endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT", r.get("OTEL_EXPORTER_OTLP_ENDPOINT")
		if endpoint == "" {
			return tracing.Config{}
		}
		endpoint = strings.TrimSuffix(endpoint, "/") + "/v1/traces"
	}
	if u, err := url.Parse(endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.bad(name, "want an http(s) URL such as http://127.0.0.1:4318, got %q", database.Redact(r.get(name)))
		return tracing.Config{}
	}
	return tracing.Config{Endpoint: endpoint}
}
