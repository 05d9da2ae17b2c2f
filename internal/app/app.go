// Package app opens the connections a kycbatch process needs (PostgreSQL,
// Redis, S3) and runs its HTTP listeners until the context ends, so that
// cmd/api, cmd/worker and cmd/devserver wire the same pieces the same way.
package app

import (
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
	"github.com/kycbatch/kycbatch/internal/storage"
)

// RedisStartHint tells a developer how to start the Redis of this machine.
const RedisStartHint = `start it with: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no`

// App holds the open connections of a process.
type App struct {
	Pool  *pgxpool.Pool
	Redis redis.UniversalClient
	Queue *asynq.Client
	Files *storage.Store
}

// Open connects to PostgreSQL, Redis and S3 as cfg says. An unreachable
// PostgreSQL or Redis is one clear error naming its URL and how to start it.
func Open(ctx context.Context, cfg config.Config) (*App, error) {
	pool, err := database.Open(ctx, cfg.DatabaseURL, database.PoolSize(cfg.WorkerConcurrency))
	if err != nil {
		return nil, err
	}
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
	return &App{Pool: pool, Redis: rdb, Queue: asynq.NewClientFromRedisClient(rdb), Files: files}, nil
}

// OpenRedis connects to the Redis at url and checks that it answers.
func OpenRedis(ctx context.Context, url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opt)
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("cannot reach Redis at %s (%s): %w", database.Redact(url), RedisStartHint, err)
	}
	return rdb, nil
}

// Close closes every connection. The Asynq client shares the Redis client
// and has nothing of its own to close.
func (a *App) Close() {
	a.Redis.Close()
	a.Pool.Close()
}

// Serve serves handler on ln until ctx ends, then stops accepting and lets
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
