// Package app is the composition root of kycbatch: Open connects to
// PostgreSQL, Redis and S3 once and builds the domain services on them; the
// API handler (httpapi.New), the worker (worker.New) and the operations
// handler (OpsHandler) are built from the App, so that cmd/api, cmd/worker
// and cmd/devserver only wire, and wire the same pieces the same way.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/metrics"
	"github.com/kycbatch/kycbatch/internal/redisconn"
	"github.com/kycbatch/kycbatch/internal/rediskey"
	"github.com/kycbatch/kycbatch/internal/reports"
	"github.com/kycbatch/kycbatch/internal/schedule"
	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/sumsub/circuit"
	"github.com/kycbatch/kycbatch/internal/tracing"
)

// RedisStartHint tells a developer how to start the Redis of this machine.
const RedisStartHint = `start it with: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no`

// App holds a process's connections and the domain services built on them.
type App struct {
	Logger    *slog.Logger
	Metrics   *metrics.Metrics
	Pool      *pgxpool.Pool
	Redis     redis.UniversalClient
	Queue     *asynq.Client
	Inspector *asynq.Inspector
	Files     *storage.Store
	// Outbox announces the events recorded with the changes they report.
	Outbox *event.Outbox
	// Schedule decides whose record gets the next Sumsub permit.
	Schedule *schedule.Scheduler
	// Circuit pauses every worker's Sumsub calls while Sumsub as a whole fails.
	Circuit *circuit.Breaker
	// Batches and Reports serve the API and render the data of webhook events.
	Batches *ingest.Service
	Reports *reports.Service
}

// Options are what the domain services need besides the connections.
type Options struct {
	// PoolSize bounds the PostgreSQL pool (0: pgx's default; pool_max_conns
	// in DATABASE_URL wins).
	PoolSize int32
	// SumsubRateLimit paces every batch: completion estimates come from it.
	SumsubRateLimit int
	// ReportLinkTTL is how long a report's download link works.
	ReportLinkTTL time.Duration
	// UploadRetention is how long a final batch's raw upload is kept (the
	// status says until when); Open takes it from the configuration.
	UploadRetention time.Duration
	// ReportMaxPending is how many reports a business may have pending or
	// processing (the API's limit; 0 in a worker, which starts none).
	ReportMaxPending int
	// SumsubProbeInterval is the longest wait between probes of Sumsub
	// while the circuit is open (0: circuit.DefaultMaxProbeWait).
	SumsubProbeInterval time.Duration
	// Metrics are another App's, to share (nil: the App's own).
	Metrics *metrics.Metrics
}

// Open connects to PostgreSQL, Redis and S3 as cfg says and builds the
// services. An unreachable PostgreSQL or Redis is one clear error naming its
// URL and how to start it.
func Open(ctx context.Context, cfg config.Common, opts Options, logger *slog.Logger) (*App, error) {
	pool, err := database.Open(ctx, cfg.DatabaseURL, opts.PoolSize)
	if err != nil {
		return nil, err
	}
	redisconn.SetLogger(logger)
	rdb, err := OpenRedis(ctx, cfg.RedisURL)
	if err != nil {
		pool.Close()
		return nil, err
	}
	files, err := storage.New(ctx, cfg.S3)
	if err != nil {
		pool.Close()
		rdb.Close()
		return nil, err
	}
	opts.UploadRetention = cfg.UploadRetention
	return New(pool, rdb, files, opts, logger), nil
}

// New builds an App on open connections (tests bring their own).
func New(pool *pgxpool.Pool, rdb redis.UniversalClient, files *storage.Store, opts Options, logger *slog.Logger) *App {
	a := &App{
		Logger: logger, Metrics: cmp.Or(opts.Metrics, metrics.New()), Pool: pool, Redis: rdb, Files: files,
		Queue: asynq.NewClientFromRedisClient(rdb), Inspector: asynq.NewInspectorFromRedisClient(rdb),
	}
	a.Outbox = event.NewOutbox(a.Queue, logger)
	a.Schedule = schedule.New(rdb)
	a.Circuit = circuit.New(rdb, opts.SumsubProbeInterval, logger, a.Metrics)
	a.Batches = ingest.NewService(ingest.ServiceConfig{
		Pool: pool, Files: files, Schedule: a.Schedule, Outbox: a.Outbox, Logger: logger,
		Rate: opts.SumsubRateLimit, UploadRetention: opts.UploadRetention,
	})
	a.Reports = reports.NewService(reports.ServiceConfig{
		Pool: pool, Links: files, LinkTTL: opts.ReportLinkTTL, Queue: a.Queue, MaxPending: opts.ReportMaxPending, Logger: logger,
	})
	a.Metrics.WatchDependencies(a.checkDependencies)
	return a
}

// Backlog reads the records waiting: in the fair schedule, and the record
// tasks waiting out a retry in the sumsub queue.
func (a *App) Backlog(ctx context.Context) (metrics.Backlog, error) {
	waiting, by, err := a.Schedule.Waiting(ctx)
	if err != nil {
		return metrics.Backlog{}, err
	}
	retry, err := a.Redis.ZCard(ctx, rediskey.AsynqRetry(schedule.Queue)).Result()
	if err != nil {
		return metrics.Backlog{}, fmt.Errorf("count the record tasks in retry: %w", err)
	}
	b := metrics.Backlog{Waiting: waiting, ByBusiness: make(map[string]int, len(by)), Retry: int(retry)}
	for id, n := range by {
		b.ByBusiness[id.String()] = n
	}
	return b, nil
}

// OpenRedis connects to the Redis at url and checks that it answers.
func OpenRedis(ctx context.Context, url string) (*redis.Client, error) {
	opt, err := redisconn.Parse(url)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := opt.NewClient()
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("cannot reach Redis at %s (%s): %w", database.Redact(url), RedisStartHint, err)
	}
	return rdb, nil
}

// Close closes every connection. The Asynq client and inspector share the
// Redis client and have nothing of their own to close.
func (a *App) Close() {
	a.Redis.Close()
	a.Pool.Close()
}

// Serve serves srv on ln until ctx ends, then stops accepting and lets
// in-flight requests finish for up to drain.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, drain time.Duration, logger *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	logger.Info("shutting down HTTP server", "addr", ln.Addr().String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down %s: %w", ln.Addr(), err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// HTTPServer wraps handler with the timeouts and limits every listener of kycbatch uses.
func HTTPServer(handler http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute, // a 10 MB upload on a slow link
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// StartTracing starts exporting traces when cfg has an endpoint, as service
// (OTEL_SERVICE_NAME wins); tracing stays off otherwise. It must run before
// Open, whose pool traces its statements only if tracing is on. stop
// flushes the spans not yet sent, within a few seconds, as the process
// stops.
func StartTracing(ctx context.Context, cfg tracing.Config, service string, logger *slog.Logger) (stop func(), err error) {
	shutdown, err := tracing.Start(ctx, cfg, service, logger)
	if err != nil {
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			logger.Warn("stop tracing", "error", err)
		}
	}, nil
}
