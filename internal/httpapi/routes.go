package httpapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/reports"
)

// addRoutes maps every path of the API to its handler.
func addRoutes(e *echo.Echo, d Deps) {
	keys := auth.NewStore(d.Pool)
	entities := entity.NewHandler(entity.NewStore(d.Pool))
	batches := ingest.NewHandler(ingest.NewStore(d.Pool), d.Files, d.Queue, d.Logger, d.SumsubRate)
	usage := reports.NewHandler(reports.NewStore(d.Pool), d.Files, d.Queue, d.ReportLinkTTL, d.Logger)

	addHealthRoutes(e, d)
	addMonitoring(e, d)
	// The HTTP contract, as OpenAPI.
	e.GET("/openapi.yaml", openAPI)

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
