package httpapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/api"
	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/webhook"
)

// addRoutes maps every path of the API to its handler.
func addRoutes(e *echo.Echo, a *app.App, cfg config.API) {
	entities := entityHandler{store: entity.NewStore(a.Pool)}
	batches := batchHandler{batches: a.Batches, gate: newUploadGate(cfg.UploadMaxConcurrent, cfg.UploadMaxInflightBytes)}
	usage := reportHandler{reports: a.Reports}
	endpoints := endpointHandler{endpoints: webhook.NewEndpoints(a.Pool, cfg.AllowPrivateWebhookURLs, a.Logger)}

	ops := echo.WrapHandler(a.OpsHandler())
	// Liveness: the process serves HTTP.
	e.GET("/healthz", ops)
	// Readiness: PostgreSQL, Redis and S3 answer.
	e.GET("/readyz", ops)
	// Prometheus metrics of the process.
	e.GET("/metrics", ops)
	// The HTTP contract, as OpenAPI.
	e.GET("/openapi.yaml", func(c echo.Context) error { return c.Blob(http.StatusOK, "application/yaml", api.OpenAPI) })
	addMonitoring(e, a, cfg.Monitoring)
	// Sumsub's review webhooks: no API key, the payload digest authenticates
	// them; without a webhook secret, a 404 as if unknown (not the API-key 401).
	receiveSumsub := func(echo.Context) error { return echo.ErrNotFound }
	if cfg.SumsubWebhookSecret != "" {
		receiveSumsub = sumsubHookHandler{pool: a.Pool, secret: cfg.SumsubWebhookSecret, logger: a.Logger}.receive
	}
	e.POST("/webhooks/sumsub", receiveSumsub)

	// Every route below takes the API key of a business. The middleware is
	// the routes' own, not a group's: a group's catch-all would answer a
	// known path's unknown method 404 instead of 405.
	authenticated := authenticate(auth.NewStore(a.Pool))
	rateLimited := limitRate(a.Redis, cfg.RateLimit, a.Logger)
	authed := func(next echo.HandlerFunc) echo.HandlerFunc { return authenticated(rateLimited(next)) }
	// Create an entity of the calling business.
	e.POST("/entity", entities.create, authed)
	// List the business's entities, newest first, a cursor page at a time.
	e.GET("/entity", entities.list, authed)
	// Read one entity by id or by externalId.
	e.GET("/entity/:entityId", entities.get, authed)
	// Upload a CSV batch of KYC records.
	e.POST("/entity/kyc/import/batch", batches.upload, authed)
	// List the business's batches, newest first, a cursor page at a time.
	e.GET("/entity/kyc/import/batch", batches.list, authed)
	// Read a batch's status and counters.
	e.GET("/entity/kyc/import/batch/:batchId", batches.status, authed)
	// Page through a batch's per-record results.
	e.GET("/entity/kyc/import/batch/:batchId/records", batches.records, authed)
	// Stop a batch: records not yet sent to Sumsub are cancelled.
	e.POST("/entity/kyc/import/batch/:batchId/cancel", batches.cancel, authed)
	// Start building a usage report of a batch.
	e.POST("/api/v1/stamper-v2/bulk-usage-report/initiate", usage.initiate, authed)
	// Read a report's state, stats and, once built, a fresh download link.
	e.GET("/api/v1/stamper-v2/bulk-usage-report/download", usage.download, authed)
	// Register a webhook endpoint; the answer shows its signing secret, once.
	e.POST("/webhook-endpoints", endpoints.create, authed)
	// List the business's webhook endpoints, without secrets.
	e.GET("/webhook-endpoints", endpoints.list, authed)
	// Delete a webhook endpoint and its pending deliveries.
	e.DELETE("/webhook-endpoints/:id", endpoints.remove, authed)
	// List a webhook endpoint's latest delivery attempts, newest first.
	e.GET("/webhook-endpoints/:id/deliveries", endpoints.deliveries, authed)
}
