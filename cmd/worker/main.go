// Command worker runs the Asynq server of kycbatch: it turns stored batches
// into Sumsub imports, builds reports and delivers webhooks. It serves its
// health, readiness and metrics on WORKER_METRICS_ADDR. Configuration comes
// from environment variables (see .env.example).
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
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/logging"
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
	cfg, err := config.LoadWorker(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	logger := logging.New(stderr, cfg.LogLevel)
	stopTracing, err := app.StartTracing(ctx, cfg.Tracing, "kycbatch-worker", logger)
	if err != nil {
		return err
	}
	defer stopTracing()
	a, err := app.Open(ctx, cfg.Common, app.Options{
		PoolSize: database.WorkerPoolSize(cfg.Concurrency), SumsubRateLimit: cfg.Sumsub.RateLimit, ReportLinkTTL: cfg.ReportLinkTTL,
		SumsubProbeInterval: cfg.Sumsub.ProbeInterval,
	}, logger)
	if err != nil {
		return err
	}
	defer a.Close()
	w, err := worker.New(a, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listen on WORKER_METRICS_ADDR: %w", err)
	}
	logger.Info("worker starting", "config", cfg, "metrics_addr", ln.Addr().String())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(gctx) })
	g.Go(func() error {
		return app.Serve(gctx, app.HTTPServer(a.OpsHandler(), logger), ln, 5*time.Second, logger)
	})
	return g.Wait()
}
