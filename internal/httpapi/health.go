package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/api"
	"github.com/kycbatch/kycbatch/internal/web"
)

// readyTimeout bounds each dependency check of /readyz.
const readyTimeout = 2 * time.Second

// readiness is the body of /readyz.
type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// readyz answers whether PostgreSQL, Redis and S3 all answer, checked
// together, each within readyTimeout. Failures are logged, not shown: the
// endpoint needs no key, so it says nothing of the network behind it.
func readyz(d Deps) echo.HandlerFunc {
	checks := map[string]func(context.Context) error{
		"postgres": d.Pool.Ping,
		"redis":    func(ctx context.Context) error { return d.Redis.Ping(ctx).Err() },
		"s3":       d.Files.Ping,
	}
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
		defer cancel()
		body := readiness{Status: "ok", Checks: make(map[string]string, len(checks))}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for name, check := range checks {
			wg.Go(func() {
				err := check(ctx)
				mu.Lock()
				defer mu.Unlock()
				body.Checks[name] = "ok"
				if err != nil {
					body.Checks[name], body.Status = "unavailable", "unavailable"
					d.Logger.WarnContext(ctx, "readiness check failed", slog.String("dependency", name), slog.Any("error", err))
				}
			})
		}
		wg.Wait()
		status := http.StatusOK
		if body.Status != "ok" {
			status = http.StatusServiceUnavailable
		}
		return web.JSON(c, status, body)
	}
}

// openAPI serves the contract.
func openAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", api.OpenAPI)
}
