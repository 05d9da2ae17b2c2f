// Command worker runs the Asynq server of kycbatch: it turns stored batches
// into Sumsub imports and builds reports. Configuration comes from environment
// variables (see .env.example).
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/httpapi"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/metrics"
	"github.com/kycbatch/kycbatch/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if err := cfg.CheckWorker(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	logger := logging.New(stderr, cfg.LogLevel)
	a, err := app.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	m := metrics.New()
	w, err := worker.New(worker.Deps{Logger: logger, Metrics: m, Pool: a.Pool, Redis: a.Redis, Config: cfg, Files: a.Files})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.WorkerOpsAddr)
	if err != nil {
		return fmt.Errorf("listen on WORKER_METRICS_ADDR: %w", err)
	}
	ops := httpapi.NewOpsServer(httpapi.Deps{Logger: logger, Metrics: m, Pool: a.Pool, Redis: a.Redis, Files: a.Files})
	logger.Info("worker starting", "config", cfg, "ops_addr", ln.Addr().String())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(gctx) })
	g.Go(func() error {
		return app.Serve(gctx, httpapi.HTTPServer(cfg.WorkerOpsAddr, ops, logger), ln, 5*time.Second, logger)
	})
	return g.Wait()
}
