// Command api is the HTTP server of kycbatch and its admin commands:
//
//	api [serve]                        serve the HTTP API (the default)
//	api migrate                        apply the database migrations
//	api create-business --name NAME    create a business, print its id
//	api create-api-key --business NAME create the business if needed, print a new API key
//	api revoke-api-key --prefix PREFIX revoke the key that starts with PREFIX
//	api set-business-weight --business NAME --weight N
//	                                   set the business's share of the Sumsub rate (1 to 100)
//
// Configuration comes from environment variables (see .env.example).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/httpapi"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/schedule"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.LoadAPI(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, cfg, stderr)
	case "migrate":
		return migrate(ctx, cfg, stdout)
	case "create-business", "create-api-key", "revoke-api-key", "set-business-weight":
		return admin(ctx, cfg, cmd, args, stdout)
	default:
		return fmt.Errorf("unknown command %q: want serve, migrate, create-business, create-api-key, revoke-api-key or set-business-weight", cmd)
	}
}

// serve runs the HTTP API until ctx ends.
func serve(ctx context.Context, cfg config.API, stderr io.Writer) error {
	logger := logging.New(stderr, cfg.LogLevel)
	stopTracing, err := app.StartTracing(ctx, cfg.Tracing, "kycbatch-api", logger)
	if err != nil {
		return err
	}
	defer stopTracing()
	a, err := app.Open(ctx, cfg.Common, app.Options{
		PoolSize: database.APIPoolSize, SumsubRateLimit: cfg.SumsubRateLimit, ReportLinkTTL: cfg.ReportLinkTTL,
		ReportMaxPending: cfg.ReportMaxPending,
	}, logger)
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on HTTP_ADDR: %w", err)
	}
	logger.Info("api listening", "addr", ln.Addr().String(), "config", cfg)
	return app.Serve(ctx, app.HTTPServer(httpapi.New(a, cfg), logger), ln, cfg.ShutdownTimeout, logger)
}

// migrate applies the migrations: the deploy step before new code starts.
func migrate(ctx context.Context, cfg config.API, stdout io.Writer) error {
	if err := database.Migrate(ctx, cfg.DatabaseMigrateURL); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "migrations applied")
	return nil
}

// admin runs the commands that manage businesses and keys.
func admin(ctx context.Context, cfg config.API, cmd string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	name := fs.String("name", "", "business name (create-business)")
	business := fs.String("business", "", "business name (create-api-key)")
	prefix := fs.String("prefix", "", "first characters of the key, as stored (revoke-api-key)")
	weight := fs.Int("weight", 0, "the business's share of the Sumsub rate, 1 to 100 (set-business-weight)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pool, err := database.Open(ctx, cfg.DatabaseURL, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	keys := auth.NewStore(pool)

	switch cmd {
	case "create-business":
		if *name == "" {
			return errors.New("create-business: --name is required")
		}
		id, err := keys.EnsureBusiness(ctx, *name)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, id)
	case "create-api-key":
		if *business == "" {
			return errors.New("create-api-key: --business is required")
		}
		id, err := keys.EnsureBusiness(ctx, *business)
		if err != nil {
			return err
		}
		key := auth.NewKey()
		if err := keys.AddKey(ctx, id, key); err != nil {
			return err
		}
		fmt.Fprintln(stdout, key) // the only time the key is ever shown
	case "revoke-api-key":
		n, err := keys.RevokeKey(ctx, *prefix)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("revoke-api-key: no active key starts with %q", *prefix)
		}
		fmt.Fprintf(stdout, "revoked %d key(s)\n", n)
	case "set-business-weight":
		if *business == "" {
			return errors.New("set-business-weight: --business is required")
		}
		id, err := keys.SetWeight(ctx, *business, *weight)
		if err != nil {
			return fmt.Errorf("set-business-weight: %w", err)
		}
		fmt.Fprintf(stdout, "business %q now has weight %d\n", *business, *weight)
		// The workers read weights from the schedule in Redis: tell it now.
		// Without Redis, the reconciler copies the weights of businesses
		// with work from PostgreSQL within RECONCILE_INTERVAL.
		if err := tellSchedule(ctx, cfg, id, *weight); err != nil {
			fmt.Fprintf(stdout, "the workers take it within RECONCILE_INTERVAL (Redis: %v)\n", err)
		}
	}
	return nil
}

// tellSchedule sets the business's weight in the schedule in Redis.
func tellSchedule(ctx context.Context, cfg config.API, business uuid.UUID, weight int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rdb, err := app.OpenRedis(ctx, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	return schedule.New(rdb).SetWeight(ctx, business, weight)
}
