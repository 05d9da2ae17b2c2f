// Command worker runs the Asynq server of kycbatch: it turns stored batches
// into Sumsub imports and builds reports. Configuration comes from environment
// variables (see .env.example).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/logging"
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
	logger := logging.New(stderr, cfg.LogLevel)
	a, err := app.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	logger.Info("worker started", "config", cfg)
	<-ctx.Done()
	logger.Info("worker stopped")
	return nil
}
