package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"github.com/hibiken/asynqmon"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/config"
)

// monitoringPath is where the Asynq dashboard is mounted.
const monitoringPath = "/monitoring"

// addMonitoring mounts the Asynq dashboard behind HTTP basic auth with the
// ops credentials; without credentials it is not mounted at all.
func addMonitoring(e *echo.Echo, a *app.App, cfg config.Monitoring) {
	if !cfg.Enabled() {
		return
	}
	dashboard := asynqmon.New(asynqmon.Options{
		RootPath:          monitoringPath,
		RedisConnOpt:      sharedRedis{a.Redis},
		ReadOnly:          cfg.ReadOnly,
		PrometheusAddress: cfg.PrometheusAddr,
	})
	wantUser, wantPassword := sha256.Sum256([]byte(cfg.User)), sha256.Sum256([]byte(cfg.Password))
	opsAuth := middleware.BasicAuthWithConfig(middleware.BasicAuthConfig{
		Realm: "kycbatch operations",
		// Hashes make the comparison constant-time whatever the lengths.
		Validator: func(user, password string, _ echo.Context) (bool, error) {
			u, p := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
			return subtle.ConstantTimeCompare(u[:], wantUser[:])&subtle.ConstantTimeCompare(p[:], wantPassword[:]) == 1, nil
		},
	})
	// The dashboard and its API, for the ops people.
	e.Any(monitoringPath+"/*", echo.WrapHandler(dashboard), opsAuth)
	e.GET(monitoringPath, func(c echo.Context) error {
		return c.Redirect(http.StatusMovedPermanently, monitoringPath+"/")
	}, opsAuth)
}

// sharedRedis hands the process's Redis client to the dashboard, which asks
// for an Asynq connection option.
type sharedRedis struct{ client redis.UniversalClient }

// MakeRedisClient returns the shared client.
func (s sharedRedis) MakeRedisClient() any { return s.client }
