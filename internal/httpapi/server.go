// Package httpapi builds the HTTP API of kycbatch on Echo: the routes, the
// middleware, the handlers (which parse requests, call the domain and answer
// with the contract's bodies) and the two error tables that turn the
// domain's errors into each API family's answers.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/tracing"
)

// New returns the HTTP handler of the whole API, on the App's connections
// and services. It also has the App's metrics count the queues, the batches
// and the records waiting, which the API process reports, and give Sumsub's
// rate limit.
func New(a *app.App, cfg config.API) http.Handler {
	a.Metrics.WatchQueues(a.Inspector)
	a.Metrics.WatchBatches(func(ctx context.Context) (map[string]int, error) { return ingest.CountByStatus(ctx, a.Pool) }, a.Logger)
	a.Metrics.WatchBacklog(a.Backlog, a.Logger)
	a.Metrics.SumsubRateLimit.Set(float64(cfg.SumsubRateLimit))

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(a.Logger)

	e.Use(middleware.RequestIDWithConfig(middleware.RequestIDConfig{
		RequestIDHandler: func(c echo.Context, id string) {
			req := c.Request()
			c.SetRequest(req.WithContext(logging.With(req.Context(), slog.String("request_id", id))))
		},
	}))
	// A server span per request while tracing is on (after the request id,
	// before Recover: a panic still ends the span with its 500).
	if mw := tracing.Echo(); mw != nil {
		e.Use(mw)
	}
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
			method := metricMethod(v.Method)
			a.Metrics.HTTPRequests.WithLabelValues(route, method, strconv.Itoa(v.Status)).Inc()
			a.Metrics.HTTPDuration.WithLabelValues(route, method).Observe(v.Latency.Seconds())
			a.Logger.LogAttrs(c.Request().Context(), level, "request",
				slog.String("method", v.Method), slog.String("path", v.URIPath), slog.String("route", v.RoutePath),
				slog.Int("status", v.Status), slog.Duration("latency", v.Latency))
			return nil
		},
	}))

	addRoutes(e, a, cfg)
	return e
}

// metricMethod is a request's method as a metric label: the standard
// methods, and "other" for any other, so that a client's made-up methods
// cannot create series without end.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}
