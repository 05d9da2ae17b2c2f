package httpapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/reports"
	"github.com/kycbatch/kycbatch/internal/sumsubhook"
	"github.com/kycbatch/kycbatch/internal/webhook"
)

// addRoutes maps every path of the API to its handler.
func addRoutes(e *echo.Echo, d Deps) {
	keys := auth.NewStore(d.Pool)
	entities := entity.NewHandler(entity.NewStore(d.Pool))
	hooks := webhook.NewStore(d.Pool)
	batches := ingest.NewHandler(ingest.NewStore(d.Pool), d.Files, d.Queue, d.Logger, d.SumsubRate).
		WithNotifier(webhook.NewNotifier(hooks, d.Queue, d.Logger))
	endpoints := webhook.NewHandler(hooks, d.Webhooks.AllowPrivateURLs, d.Logger)
	usage := reports.NewHandler(reports.NewStore(d.Pool), d.Files, d.Queue, d.ReportLinkTTL, d.Logger)

	addHealthRoutes(e, d)
	addMonitoring(e, d)
	// The HTTP contract, as OpenAPI.
	e.GET("/openapi.yaml", openAPI)
	// Sumsub's review webhooks: no API key, the payload digest authenticates
	// them; without a webhook secret, a 404 as if unknown (not the API-key 401).
	receiveSumsub := func(echo.Context) error { return echo.ErrNotFound }
	if d.SumsubWebhookSecret != "" {
		receiveSumsub = sumsubhook.NewHandler(sumsubhook.NewStore(d.Pool), d.SumsubWebhookSecret, d.Logger).Receive
	}
	e.POST("/webhooks/sumsub", receiveSumsub)

	api := e.Group("", keys.Middleware())
	// Create an entity of the calling business.
	api.POST("/entity", entities.Create)
	// List the business's entities, newest first, a cursor page at a time.
	api.GET("/entity", entities.List)
	// Read one entity by id or by externalId.
	api.GET("/entity/:entityId", entities.Get)
	// Upload a CSV batch of KYC records.
	api.POST("/entity/kyc/import/batch", batches.Upload)
	// Read a batch's status and counters.
	api.GET("/entity/kyc/import/batch/:batchId", batches.Status)
	// Page through a batch's per-record results.
	api.GET("/entity/kyc/import/batch/:batchId/records", batches.Records)
	// Stop a batch: records not yet sent to Sumsub are cancelled.
	api.POST("/entity/kyc/import/batch/:batchId/cancel", batches.Cancel)
	// Start building a usage report of a batch.
	api.POST("/api/v1/stamper-v2/bulk-usage-report/initiate", usage.Initiate)
	// Read a report's state, stats and, once built, a fresh download link.
	api.GET("/api/v1/stamper-v2/bulk-usage-report/download", usage.Download)
	// Register a webhook endpoint; the answer shows its signing secret, once.
	api.POST("/webhook-endpoints", endpoints.Create)
	// List the business's webhook endpoints, without secrets.
	api.GET("/webhook-endpoints", endpoints.List)
	// Delete a webhook endpoint and its pending deliveries.
	api.DELETE("/webhook-endpoints/:id", endpoints.Delete)
	// List a webhook endpoint's latest delivery attempts, newest first.
	api.GET("/webhook-endpoints/:id/deliveries", endpoints.Deliveries)
}

// addHealthRoutes maps the probes every process serves.
func addHealthRoutes(e *echo.Echo, d Deps) {
	// Liveness: the process serves HTTP.
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	// Readiness: PostgreSQL, Redis and S3 answer.
	e.GET("/readyz", readyz(d))
	// Prometheus metrics of the process.
	e.GET("/metrics", echo.WrapHandler(d.Metrics.Handler()))
}
