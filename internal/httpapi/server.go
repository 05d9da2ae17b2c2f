// Package httpapi builds the HTTP server of kycbatch: routes, middleware and
// the error handlers that turn errors into each API family's bodies.
package httpapi

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/metrics"
	"github.com/kycbatch/kycbatch/internal/storage"
)

// Deps are what the server needs; the dev server and cmd/api fill them alike.
type Deps struct {
	Logger *slog.Logger
	Pool   *pgxpool.Pool
	Redis  redis.UniversalClient
	Files  *storage.Store
	Queue  ingest.Enqueuer
	// SumsubRate is the Sumsub rate limit (requests per second), which paces
	// batches: the status endpoint estimates completion from it.
	SumsubRate int
	// ReportLinkTTL is how long a report's download link works.
	ReportLinkTTL time.Duration
	// Metrics records every request and serves /metrics.
	Metrics *metrics.Metrics
	// Monitoring mounts the Asynq dashboard when it has credentials.
	Monitoring config.Monitoring
	// Webhooks says which endpoint URLs businesses may register.
	Webhooks config.Webhooks
	// SumsubWebhookSecret checks the digests of Sumsub's webhooks; without
	// it, POST /webhooks/sumsub is not mounted (404).
	SumsubWebhookSecret string
}

// NewServer returns the HTTP handler of the whole API.
func NewServer(d Deps) http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(d.Logger)

	e.Use(middleware.RequestIDWithConfig(middleware.RequestIDConfig{
		RequestIDHandler: func(c echo.Context, id string) {
			req := c.Request()
			c.SetRequest(req.WithContext(logging.With(req.Context(), slog.String("request_id", id))))
		},
	}))
	e.Use(middleware.Recover())
	e.Use(middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogMethod: true, LogURIPath: true, LogLatency: true, LogRoutePath: true,
		HandleError: true, // the status logged is the one the error handler wrote
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			level := slog.LevelInfo
			if v.Status >= 500 {
				level = slog.LevelError
			}
			route := v.RoutePath
			if route == "" {
				route = "unmatched" // keeps unknown paths from creating a series each
			}
			d.Metrics.HTTPRequests.WithLabelValues(route, v.Method, strconv.Itoa(v.Status)).Inc()
			d.Metrics.HTTPDuration.WithLabelValues(route, v.Method).Observe(v.Latency.Seconds())
			d.Logger.LogAttrs(c.Request().Context(), level, "request",
				slog.String("method", v.Method), slog.String("path", v.URIPath), slog.String("route", v.RoutePath),
				slog.Int("status", v.Status), slog.Duration("latency", v.Latency))
			return nil
		},
	}))

	addRoutes(e, d)
	return e
}

// NewOpsServer returns the handler of a worker's operations listener:
// liveness, readiness and metrics, as the API answers them.
func NewOpsServer(d Deps) http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(d.Logger)
	addHealthRoutes(e, d)
	return e
}

// HTTPServer wraps handler with the timeouts and limits every listener of the API uses.
func HTTPServer(addr string, handler http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute, // a 10 MB upload on a slow link
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
