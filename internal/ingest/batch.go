package ingest

import (
	"context"
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/apperr"
	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/web"
)

// Errors of the batch endpoints.
var (
	// ErrBatchNotFound answers unknown batches, other businesses' batches and ids that are not UUIDs alike.
	ErrBatchNotFound = apperr.New(apperr.NotFound, "0701020100", "batch not found").WithParameter("batchId")
	// ErrBatchFinished answers a cancel of a batch that has already finished.
	ErrBatchFinished = apperr.New(apperr.Conflict, "0701030300", "batch has already finished").WithParameter("batchId")
)

func invalidQuery(parameter, message string) *apperr.Error {
	return apperr.New(apperr.Invalid, "0701020200", message).WithParameter(parameter)
}

// maxErrorGroups is how many error groups a batch's summary lists.
const maxErrorGroups = 20

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

// batchParam parses the batchId path parameter; a malformed id is as unknown as a missing one.
func batchParam(c echo.Context) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param("batchId"))
	if err != nil {
		return uuid.Nil, ErrBatchNotFound
	}
	return id, nil
}

// Status handles GET /entity/kyc/import/batch/{batchId}.
func (h *Handler) Status(c echo.Context) error {
	id, err := batchParam(c)
	if err != nil {
		return err
	}
	b, err := h.store.Get(c.Request().Context(), auth.Business(c), id)
	if err != nil {
		return err
	}
	return h.writeStatus(c, b)
}

// writeStatus writes the status body of b.
func (h *Handler) writeStatus(c echo.Context, b Batch) error {
	resp, err := statusBody(c.Request().Context(), h.store, b, h.rate)
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, resp)
}

// statusBody is the status body of b: counters, error groups and, while it
// runs, when it should finish (at rate Sumsub requests per second). Webhook
// events of a batch carry the same body.
func statusBody(ctx context.Context, store *Store, b Batch, rate int) (statusResponse, error) {
	groups, err := store.errorGroups(ctx, b.ID, maxErrorGroups)
	if err != nil {
		return statusResponse{}, err
	}
	resp := statusResponse{
		BatchID:          b.ID,
		BusinessUUID:     b.BusinessID,
		Provider:         b.Provider,
		Status:           b.Status,
		TotalRecords:     b.Total,
		ProcessedRecords: b.Succeeded + b.Failed,
		FailedRecords:    b.Failed,
		Summary:          summary{SuccessfulRecords: b.Succeeded, Errors: groups},
		CreatedAt:        web.Time(b.CreatedAt),
		UpdatedAt:        web.Time(b.UpdatedAt),
		StartedAt:        web.TimePtr(b.StartedAt),
		CompletedAt:      web.TimePtr(b.CompletedAt),
	}
	if (b.Status == "pending" || b.Status == "in_progress") && rate > 0 {
		work, err := store.pendingWork(ctx)
		if err != nil {
			return statusResponse{}, err
		}
		eta := web.Time(time.Now().Add(estimate(work, b.ID, rate)))
		resp.EstimatedCompletionAt = &eta
	}
	return resp, nil
}

// estimate is how long batch id needs to finish when every unfinished batch
// (work: records left per batch) shares rate requests per second equally, as
// the fairness window makes them: the smaller batches finish first and leave
// their share to the others.
func estimate(work map[uuid.UUID]int, id uuid.UUID, rate int) time.Duration {
	mine := work[id]
	left := make([]int, 0, len(work))
	for _, n := range work {
		left = append(left, n)
	}
	slices.Sort(left)
	seconds, done := 0.0, 0
	for i, n := range left {
		if n > mine {
			break
		}
		// While the batches from i on are all running, each gets rate/(len-i).
		seconds += float64(n-done) * float64(len(left)-i) / float64(rate)
		done = n
	}
	return time.Duration(seconds * float64(time.Second))
}

// recordsPage is the body of GET .../batch/{batchId}/records.
type recordsPage struct {
	Records    []RecordResult `json:"records"`
	NextCursor *string        `json:"nextCursor"`
}

// recordStatuses are the values of the records' status filter.
var recordStatuses = map[string]bool{"": true, "pending": true, "succeeded": true, "failed": true, "cancelled": true}

// Records handles GET /entity/kyc/import/batch/{batchId}/records.
func (h *Handler) Records(c echo.Context) error {
	id, err := batchParam(c)
	if err != nil {
		return err
	}
	status := c.QueryParam("status")
	if !recordStatuses[status] {
		return invalidQuery("status", "status must be pending, succeeded, failed or cancelled")
	}
	limit := 100
	if s := c.QueryParam("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 1000 {
			return invalidQuery("limit", "limit must be between 1 and 1000")
		}
	}
	after := 0
	if cur := c.QueryParam("cursor"); cur != "" {
		if after, err = decodeCursor(cur); err != nil {
			return invalidQuery("cursor", "cursor is not valid")
		}
	}
	ctx := c.Request().Context()
	if _, err := h.store.Get(ctx, auth.Business(c), id); err != nil {
		return err
	}
	list, err := h.store.records(ctx, id, status, after, limit+1)
	if err != nil {
		return err
	}
	page := recordsPage{Records: list}
	if list == nil {
		page.Records = []RecordResult{}
	}
	if len(list) > limit {
		page.Records = list[:limit]
		next := encodeCursor(list[limit-1].Row)
		page.NextCursor = &next
	}
	return web.JSON(c, http.StatusOK, page)
}

// Cancel handles POST /entity/kyc/import/batch/{batchId}/cancel.
func (h *Handler) Cancel(c echo.Context) error {
	id, err := batchParam(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	b, stopped, err := h.store.cancel(ctx, auth.Business(c), id)
	if err != nil {
		return err
	}
	if !stopped {
		return h.writeStatus(c, b) // cancelled before: no second event
	}
	h.logger.InfoContext(ctx, "batch cancelled", "batch_id", id, "cancelled_records", b.Cancelled)
	resp, err := statusBody(ctx, h.store, b, h.rate)
	if err != nil {
		return err
	}
	if h.notifier != nil {
		h.notifier.Notify(ctx, b.BusinessID, EventBatchCancelled, b.ID.String(), resp)
	}
	return web.JSON(c, http.StatusOK, resp)
}

// Cursors of the records listing are opaque to clients: the last row sent.
func encodeCursor(row int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("row:" + strconv.Itoa(row)))
}

func decodeCursor(s string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, err
	}
	row, ok := strings.CutPrefix(string(b), "row:")
	if !ok {
		return 0, strconv.ErrSyntax
	}
	return strconv.Atoi(row)
}
