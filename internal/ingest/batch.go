package ingest

import (
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/apperr"
	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/web"
)

// ErrBatchNotFound answers unknown batches, other businesses' batches and ids that are not UUIDs alike.
var ErrBatchNotFound = apperr.New(apperr.NotFound, "0701020100", "batch not found").WithParameter("batchId")

// statusResponse is the body of GET /entity/kyc/import/batch/{batchId}.
type statusResponse struct {
	BatchID               uuid.UUID `json:"batchId"`
	BusinessUUID          uuid.UUID `json:"businessUuid"`
	Provider              string    `json:"provider"`
	Status                string    `json:"status"`
	TotalRecords          int       `json:"totalRecords"`
	ProcessedRecords      int       `json:"processedRecords"`
	FailedRecords         int       `json:"failedRecords"`
	Summary               summary   `json:"summary"`
	CreatedAt             web.Time  `json:"createdAt"`
	UpdatedAt             web.Time  `json:"updatedAt"`
	StartedAt             *web.Time `json:"startedAt"`
	CompletedAt           *web.Time `json:"completedAt"`
	EstimatedCompletionAt *web.Time `json:"estimatedCompletionAt"`
}

type summary struct {
	SuccessfulRecords int          `json:"successfulRecords"`
	Errors            []errorGroup `json:"errors"`
}

// errorGroup counts the records that failed with one error.
type errorGroup struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Count   int    `json:"count"`
}

// Status handles GET /entity/kyc/import/batch/{batchId}.
func (h *Handler) Status(c echo.Context) error {
	id, err := uuid.Parse(c.Param("batchId"))
	if err != nil {
		return ErrBatchNotFound
	}
	b, err := h.store.Get(c.Request().Context(), auth.Business(c), id)
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, statusResponse{
		BatchID:          b.ID,
		BusinessUUID:     b.BusinessID,
		Provider:         b.Provider,
		Status:           b.Status,
		TotalRecords:     b.Total,
		ProcessedRecords: b.Succeeded + b.Failed,
		FailedRecords:    b.Failed,
		Summary:          summary{SuccessfulRecords: b.Succeeded, Errors: []errorGroup{}},
		CreatedAt:        web.Time(b.CreatedAt),
		UpdatedAt:        web.Time(b.UpdatedAt),
		StartedAt:        web.TimePtr(b.StartedAt),
		CompletedAt:      web.TimePtr(b.CompletedAt),
	})
}
