package reports

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/apperr"
	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
	"github.com/kycbatch/kycbatch/internal/web"
)

// Errors of the report family: Code is its message_code.
var (
	ErrBatchNotFound  = apperr.New(apperr.NotFound, "batch_not_found", "Batch not found")
	ErrReportNotFound = apperr.New(apperr.NotFound, "report_not_found", "Report not found")
	ErrNoClientID     = apperr.New(apperr.Unprocessable, "validation_error", "client_id is required")
)

// Linker signs download links; *storage.Store is one.
type Linker interface {
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// Handler serves the bulk usage report endpoints.
type Handler struct {
	store   *Store
	links   Linker
	queue   taskqueue.Enqueuer
	linkTTL time.Duration
	logger  *slog.Logger
}

// NewHandler returns a Handler whose links expire after linkTTL.
func NewHandler(store *Store, links Linker, queue taskqueue.Enqueuer, linkTTL time.Duration, logger *slog.Logger) *Handler {
	return &Handler{store: store, links: links, queue: queue, linkTTL: linkTTL, logger: logger}
}

// envelope is the body of every answer of the report family.
type envelope struct {
	Data        any    `json:"data"`
	StatusCode  int    `json:"status_code"`
	Success     bool   `json:"success"`
	Message     string `json:"message"`
	MessageCode string `json:"message_code"`
}

func ok(c echo.Context, data any) error {
	return web.JSON(c, http.StatusOK, envelope{Data: data, StatusCode: http.StatusOK, Success: true, Message: "Success", MessageCode: "success"})
}

// initiated is the data of an initiate answer.
type initiated struct {
	ClientID          string    `json:"client_id"`
	BulkStampClientID uuid.UUID `json:"bulk_stamp_client_id"`
	Status            string    `json:"status"`
}

// Initiate handles POST /api/v1/stamper-v2/bulk-usage-report/initiate.
func (h *Handler) Initiate(c echo.Context) error {
	var body struct {
		ClientID string `json:"client_id"`
	}
	if err := json.NewDecoder(io.LimitReader(c.Request().Body, 64<<10)).Decode(&body); err != nil || body.ClientID == "" {
		return ErrNoClientID
	}
	batchID, err := uuid.Parse(body.ClientID)
	if err != nil {
		return ErrBatchNotFound
	}
	ctx := c.Request().Context()
	r, err := h.store.create(ctx, auth.Business(c), batchID)
	if errors.Is(err, errBatchNotFound) {
		return ErrBatchNotFound
	}
	if err != nil {
		return err
	}
	// The report is stored: if Redis is unavailable, the reconciler enqueues it later.
	if _, err := h.queue.EnqueueContext(ctx, NewBuildReportTask(r.ID)); err != nil {
		h.logger.WarnContext(ctx, "enqueue report; the reconciler will retry", "report_id", r.ID, "error", err)
	}
	return ok(c, initiated{ClientID: r.ID, BulkStampClientID: r.BatchID, Status: r.Status})
}

// downloaded is the data of a download answer.
type downloaded struct {
	ClientID          string    `json:"client_id"`
	BulkStampClientID uuid.UUID `json:"bulk_stamp_client_id"`
	Status            string    `json:"status"`
	Stats             Stats     `json:"stats"`
	Link              *string   `json:"link"`
}

// Download handles GET /api/v1/stamper-v2/bulk-usage-report/download: the
// report's state and, once built, a link signed now that expires after the TTL.
func (h *Handler) Download(c echo.Context) error {
	id := c.QueryParam("client_id")
	if id == "" {
		return ErrNoClientID
	}
	ctx := c.Request().Context()
	r, err := h.store.get(ctx, auth.Business(c), id)
	if errors.Is(err, errReportNotFound) {
		return ErrReportNotFound
	}
	if err != nil {
		return err
	}
	data, err := downloadData(ctx, h.store, h.links, h.linkTTL, r)
	if err != nil {
		return err
	}
	return ok(c, data)
}

// downloadData is the data of a download answer for r; webhook events of a
// report carry the same object.
func downloadData(ctx context.Context, store *Store, links Linker, ttl time.Duration, r Report) (downloaded, error) {
	data := downloaded{ClientID: r.ID, BulkStampClientID: r.BatchID, Status: r.Status}
	if r.Stats != nil {
		data.Stats = *r.Stats
	} else {
		var err error
		if data.Stats, err = store.currentStats(ctx, r.BatchID); err != nil {
			return downloaded{}, err
		}
	}
	if r.Status == "success" {
		link, err := links.PresignGet(ctx, r.ObjectKey, ttl)
		if err != nil {
			return downloaded{}, err
		}
		data.Link = &link
	}
	return data, nil
}
