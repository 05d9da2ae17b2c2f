package httpapi

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/contract"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/reports"
)

// reportHandler serves the bulk usage report endpoints.
type reportHandler struct {
	reports *reports.Service
}

var errNoClientID = newProblem(http.StatusUnprocessableEntity, "validation_error", "client_id is required", "")

// initiate handles POST /api/v1/stamper-v2/bulk-usage-report/initiate.
func (h reportHandler) initiate(c echo.Context) error {
	var body struct {
		ClientID string `json:"client_id"`
	}
	if err := json.NewDecoder(io.LimitReader(c.Request().Body, maxJSONBody)).Decode(&body); err != nil || body.ClientID == "" {
		return errNoClientID
	}
	batchID, err := uuid.Parse(body.ClientID)
	if err != nil {
		return ingest.ErrBatchNotFound
	}
	r, err := h.reports.Initiate(c.Request().Context(), batchID)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, contract.Success(contract.InitiatedOf(r)))
}

// download handles GET /api/v1/stamper-v2/bulk-usage-report/download: the
// report's state and, once built, a link signed now that expires after the TTL.
func (h reportHandler) download(c echo.Context) error {
	id := c.QueryParam("client_id")
	if id == "" {
		return errNoClientID
	}
	d, err := h.reports.Download(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, contract.Success(contract.DownloadOf(d)))
}
