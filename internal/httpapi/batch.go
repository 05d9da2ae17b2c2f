package httpapi

import (
	"errors"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/contract"
	"github.com/kycbatch/kycbatch/internal/ingest"
)

// batchHandler serves the batch endpoints.
type batchHandler struct {
	batches *ingest.Service
	gate    *uploadGate
}

// The upload's header and form checks, in the order the contract makes them.
var (
	errProvider       = newProblem(http.StatusBadRequest, "0701010200", "Valid X-Provider header is required", "")
	errNoIdempotency  = newProblem(http.StatusBadRequest, "0701010200", "Idempotency-Key header is required", "")
	errBadIdempotency = newProblem(http.StatusBadRequest, "0701010200", "Idempotency-Key header must be 1 to 255 printable ASCII characters", "Idempotency-Key")
	errNoFile         = newProblem(http.StatusBadRequest, "0701010200", "No files provided in the request", "")
)

// maxUploadBody bounds the whole multipart body: the file plus room for part
// headers and small form fields. A bigger body is cut off, never buffered.
const maxUploadBody = ingest.MaxFileBytes + 1<<20

// upload handles POST /entity/kyc/import/batch. It checks the request in
// the contract's order (headers, the key, the file part); the file is read
// once, as a stream, by the upload itself.
func (h batchHandler) upload(c echo.Context) error {
	req := c.Request()
	ctx := req.Context()
	if !strings.EqualFold(strings.TrimSpace(req.Header.Get("X-Provider")), "sumsub") {
		return errProvider
	}
	key := req.Header.Get("Idempotency-Key")
	if key == "" {
		return errNoIdempotency
	}
	if !validIdempotencyKey(key) {
		return errBadIdempotency
	}
	leave, err := h.gate.enter(auth.BusinessFrom(ctx), req.ContentLength)
	if err != nil {
		return err
	}
	defer leave()
	if err := h.batches.CheckKey(ctx, key); err != nil {
		return err
	}
	req.Body = http.MaxBytesReader(c.Response(), req.Body, maxUploadBody)
	part, err := filePart(req)
	if err != nil {
		return err
	}
	b, err := h.batches.Upload(ctx, key, part)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return ingest.ErrTooLarge
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/entity/kyc/import/batch/"+b.ID.String())
	return writeJSON(c, http.StatusCreated, contract.UploadedOf(b))
}

// validIdempotencyKey reports whether key is 1..255 printable ASCII characters.
func validIdempotencyKey(key string) bool {
	if len(key) > 255 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return false
		}
	}
	return true
}

// filePart returns the multipart part named "file", skipping (and draining)
// any other part before it.
func filePart(r *http.Request) (*multipart.Part, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, errNoFile
	}
	for {
		part, err := mr.NextPart()
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return nil, ingest.ErrTooLarge
		case err != nil:
			return nil, errNoFile
		case part.FormName() == "file":
			return part, nil
		}
	}
}

// batchParam parses the batchId path parameter; a malformed id is as unknown as a missing one.
func batchParam(c echo.Context) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param("batchId"))
	if err != nil {
		return uuid.Nil, ingest.ErrBatchNotFound
	}
	return id, nil
}

// status handles GET /entity/kyc/import/batch/{batchId}.
func (h batchHandler) status(c echo.Context) error {
	id, err := batchParam(c)
	if err != nil {
		return err
	}
	st, err := h.batches.Status(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, contract.BatchStatusOf(st))
}

func invalidQuery(parameter, message string) *problem {
	return newProblem(http.StatusBadRequest, "0701020200", message, parameter)
}

// statusSet is the values a status filter takes: the statuses, and ""
// (any).
func statusSet(statuses []string) map[string]bool {
	set := map[string]bool{"": true}
	for _, s := range statuses {
		set[s] = true
	}
	return set
}

// batchStatuses are the values of the batches' status filter.
var batchStatuses = statusSet(ingest.BatchStatuses)

// list handles GET /entity/kyc/import/batch.
func (h batchHandler) list(c echo.Context) error {
	status := c.QueryParam("status")
	if !batchStatuses[status] {
		return invalidQuery("status", "status must be pending, in_progress, completed, failed or cancelled")
	}
	key := c.QueryParam("idempotencyKey")
	if key != "" && !validIdempotencyKey(key) {
		return invalidQuery("idempotencyKey", "idempotencyKey must be 1 to 255 printable ASCII characters")
	}
	limit := 20
	if s := c.QueryParam("limit"); s != "" {
		var err error
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 100 {
			return invalidQuery("limit", "limit must be between 1 and 100")
		}
	}
	list, next, err := h.batches.List(c.Request().Context(), status, key, c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, contract.BatchPageOf(list, next))
}

// recordStatuses are the values of the records' status filter.
var recordStatuses = statusSet(ingest.RecordStatuses)

// records handles GET /entity/kyc/import/batch/{batchId}/records.
func (h batchHandler) records(c echo.Context) error {
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
	list, next, err := h.batches.Records(c.Request().Context(), id, status, c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, contract.RecordPageOf(list, next))
}

// cancel handles POST /entity/kyc/import/batch/{batchId}/cancel.
func (h batchHandler) cancel(c echo.Context) error {
	id, err := batchParam(c)
	if err != nil {
		return err
	}
	st, err := h.batches.Cancel(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, contract.BatchStatusOf(st))
}
