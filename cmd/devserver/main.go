// Command devserver runs all of kycbatch in one process for local development
// (`make run`): the API, the worker, an S3 endpoint on local disk, the Sumsub
// simulator, and a dev business whose API key it prints. Like a database's
// dev mode, it is never used in production.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/httpapi"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/storage/s3local"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
	"github.com/kycbatch/kycbatch/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devserver:", err)
		os.Exit(1)
	}
}

// devConfig is the dev server's configuration: the API's and the worker's,
// plus where it keeps its files and which key it gives the dev business.
type devConfig struct {
	API    config.API
	Worker config.Worker
	// DataDir holds the embedded S3's buckets and the dev API key (DATA_DIR).
	DataDir string
	// S3Addr is where the embedded S3 endpoint listens (DEV_S3_ADDR).
	S3Addr string
	// APIKey is the dev business's key (DEV_API_KEY); empty: made once and kept in DataDir.
	APIKey string
	// SimAddr is where the Sumsub simulator listens (SUMSUB_SIM_ADDR); the
	// worker's Sumsub is always the simulator here.
	SimAddr string
	// SimLatency is the simulator's answer time (SUMSUB_SIM_LATENCY).
	SimLatency time.Duration
}

// The dashboard's credentials in development, unless MONITORING_USER and MONITORING_PASSWORD say otherwise.
const (
	devMonitoringUser     = "ops"
	devMonitoringPassword = "kycbatch-dev"
)

const devBusiness = "dev"

// The Sumsub webhook loop in development: the simulator signs its review
// webhooks with devWebhookSecret (unless SUMSUB_WEBHOOK_SECRET says
// otherwise) and sends them to this API devWebhookDelay after an import.
const (
	devWebhookSecret = sumsubsim.DevWebhookSecret
	devWebhookDelay  = 5 * time.Second
)

// devDefaults are the dev server's own defaults, over the binaries': the
// simulator's credentials (its address is known once it listens), the
// dashboard on, and webhook receivers on localhost allowed.
var devDefaults = map[string]string{
	"SUMSUB_APP_TOKEN":           sumsubsim.DevAppToken,
	"SUMSUB_SECRET_KEY":          sumsubsim.DevSecretKey,
	"SUMSUB_WEBHOOK_SECRET":      devWebhookSecret,
	"WEBHOOK_ALLOW_PRIVATE_URLS": "true",
}

func loadConfig(getenv func(string) string) (devConfig, error) {
	env := func(name string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return devDefaults[name]
	}
	api, err := config.LoadAPI(env)
	worker, werr := config.LoadWorker(env)
	err = errors.Join(err, werr)
	c := devConfig{
		API:     api,
		Worker:  worker,
		DataDir: orDefault(getenv("DATA_DIR"), ".data"),
		S3Addr:  orDefault(getenv("DEV_S3_ADDR"), "127.0.0.1:8070"),
		APIKey:  strings.TrimSpace(getenv("DEV_API_KEY")),
		SimAddr: orDefault(getenv("SUMSUB_SIM_ADDR"), "127.0.0.1:8090"),
	}
	for name, addr := range map[string]string{"DEV_S3_ADDR": c.S3Addr, "SUMSUB_SIM_ADDR": c.SimAddr} {
		if _, _, serr := net.SplitHostPort(addr); serr != nil {
			err = errors.Join(err, fmt.Errorf("%s: want host:port, got %q", name, addr))
		}
	}
	latency, lerr := time.ParseDuration(orDefault(getenv("SUMSUB_SIM_LATENCY"), "50ms"))
	if lerr != nil || latency < 0 {
		err = errors.Join(err, fmt.Errorf("SUMSUB_SIM_LATENCY: want a duration such as 50ms, got %q", getenv("SUMSUB_SIM_LATENCY")))
	}
	c.SimLatency = latency
	if !c.API.Monitoring.Enabled() { // the dashboard is on in development, with known credentials
		c.API.Monitoring.User, c.API.Monitoring.Password = devMonitoringUser, devMonitoringPassword
	}
	return c, err
}

func run(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	logger := logging.New(stderr, cfg.API.LogLevel)
	stopTracing, err := app.StartTracing(ctx, cfg.API.Tracing, "kycbatch-devserver", logger)
	if err != nil {
		return err
	}
	defer stopTracing()

	// The embedded S3 endpoint comes first: the service's storage points at it.
	s3Handler, err := s3local.OnDisk(filepath.Join(cfg.DataDir, "s3"))
	if err != nil {
		return err
	}
	s3ln, err := net.Listen("tcp", cfg.S3Addr)
	if err != nil {
		return fmt.Errorf("listen on DEV_S3_ADDR: %w", err)
	}
	cfg.API.S3 = s3local.Config("http://"+s3ln.Addr().String(), cfg.API.S3.Bucket)
	cfg.Worker.Common = cfg.API.Common
	sim := sumsubsim.New(sumsubsim.Config{AppToken: sumsubsim.DevAppToken, SecretKey: sumsubsim.DevSecretKey, RateLimit: cfg.Worker.Sumsub.RateLimit, Latency: cfg.SimLatency})
	simln, err := net.Listen("tcp", cfg.SimAddr)
	if err != nil {
		return fmt.Errorf("listen on SUMSUB_SIM_ADDR: %w", err)
	}
	cfg.Worker.Sumsub.BaseURL = "http://" + simln.Addr().String()
	cfg.Worker.Sumsub.AppToken, cfg.Worker.Sumsub.SecretKey = sumsubsim.DevAppToken, sumsubsim.DevSecretKey

	if err := database.EnsureExists(ctx, cfg.API.DatabaseURL); err != nil {
		return err
	}
	// Before the pool opens: its connections take the database's settings.
	if err := database.Migrate(ctx, cfg.API.DatabaseMigrateURL); err != nil {
		return err
	}
	// One process: the API and the worker share the connections, the
	// services and one set of metrics.
	a, err := app.Open(ctx, cfg.API.Common, app.Options{
		PoolSize:        database.APIPoolSize + database.WorkerPoolSize(cfg.Worker.Concurrency),
		SumsubRateLimit: cfg.API.SumsubRateLimit, ReportLinkTTL: cfg.API.ReportLinkTTL,
		ReportMaxPending:    cfg.API.ReportMaxPending,
		SumsubProbeInterval: cfg.Worker.Sumsub.ProbeInterval,
	}, logger)
	if err != nil {
		return err
	}
	defer a.Close()
	key, err := devKey(ctx, auth.NewStore(a.Pool), cfg)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.API.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on HTTP_ADDR: %w", err)
	}
	// The simulator's review webhooks come back to this API.
	sim.SetWebhook(sumsubsim.Webhook{URL: "http://" + ln.Addr().String() + "/webhooks/sumsub", Secret: cfg.API.SumsubWebhookSecret, Delay: devWebhookDelay})
	defer sim.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return app.Serve(gctx, &http.Server{Handler: s3Handler, ReadHeaderTimeout: 10 * time.Second}, s3ln, 5*time.Second, logger)
	})
	g.Go(func() error {
		return app.Serve(gctx, &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}, simln, 5*time.Second, logger)
	})
	w, err := worker.New(a, cfg.Worker)
	if err != nil {
		return err
	}
	g.Go(func() error { return w.Run(gctx) })
	if err := ensureBucket(ctx, a.Files); err != nil {
		return err
	}
	g.Go(func() error {
		return app.Serve(gctx, app.HTTPServer(httpapi.New(a, cfg.API), logger), ln, 10*time.Second, logger)
	})
	// The worker's /metrics, /healthz and /readyz are the API's here: no
	// WORKER_METRICS_ADDR is listened on.
	cfg.Worker.MetricsAddr = ""
	logger.Info("dev server started", "api", cfg.API, "worker", cfg.Worker, "s3_addr", s3ln.Addr().String(), "sumsub_sim_addr", simln.Addr().String())
	printWelcome(stdout, "http://"+ln.Addr().String(), "http://"+s3ln.Addr().String(), cfg.Worker.Sumsub.BaseURL, key, cfg.API.Monitoring)
	return g.Wait()
}

// ensureBucket creates the dev bucket once the embedded S3 serves.
func ensureBucket(ctx context.Context, files *storage.Store) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return files.EnsureBucket(ctx)
}

// devKey returns the dev business's API key: DEV_API_KEY when set, else the
// key kept in DATA_DIR, made on the first start. Either way it is registered.
func devKey(ctx context.Context, keys *auth.Store, cfg devConfig) (string, error) {
	key := cfg.APIKey
	keyFile := filepath.Join(cfg.DataDir, "dev-api-key")
	if key == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return "", fmt.Errorf("DATA_DIR: %w", err)
		}
		b, err := os.ReadFile(keyFile)
		switch {
		case err == nil:
			key = strings.TrimSpace(string(b))
		case errors.Is(err, fs.ErrNotExist):
			key = auth.NewKey()
			if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
				return "", fmt.Errorf("keep dev API key: %w", err)
			}
		default:
			return "", fmt.Errorf("read dev API key: %w", err)
		}
	}
	business, err := keys.EnsureBusiness(ctx, devBusiness)
	if err != nil {
		return "", err
	}
	if err := keys.AddKey(ctx, business, key); err != nil {
		return "", fmt.Errorf("DEV_API_KEY: %w", err)
	}
	return key, nil
}

func printWelcome(w io.Writer, apiURL, s3URL, simURL, key string, ops config.Monitoring) {
	fmt.Fprintf(w, `
kycbatch dev server
  API        %[1]s
  S3         %[2]s (bucket files under DATA_DIR/s3)
  Sumsub     %[3]s (simulator; stats at %[3]s/_sim/stats)
  API key    %[4]s   (business %[5]q)
  Dashboard  %[1]s/monitoring/   (user %[6]q, password %[7]q)
  Metrics    %[1]s/metrics

Try it:
  export KYCBATCH_URL=%[1]s KYCBATCH_API_KEY=%[4]s
  curl -s -H "Authorization: Bearer $KYCBATCH_API_KEY" $KYCBATCH_URL/entity

`, apiURL, s3URL, simURL, key, devBusiness, ops.User, ops.Password)
}

func orDefault(v, def string) string {
	if v = strings.TrimSpace(v); v != "" {
		return v
	}
	return def
}
