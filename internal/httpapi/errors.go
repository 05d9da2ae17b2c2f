package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/contract"
	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/reports"
	"github.com/kycbatch/kycbatch/internal/webhook"
)

// reportPrefix starts every path of the bulk usage report family, whose
// errors use its envelope instead of the batch family's body.
const reportPrefix = "/api/v1/stamper-v2/"

// problem is an answer to an error: the status, and the contract's code,
// message and offending parameter.
type problem struct {
	status    int
	code      string
	message   string
	parameter string
}

// Error lets a handler return a problem it found in the request itself (a
// header, a query parameter, a body that is not JSON), already in its
// family's terms.
func (p *problem) Error() string { return p.code + ": " + p.message }

func newProblem(status int, code, message, parameter string) *problem {
	return &problem{status: status, code: code, message: message, parameter: parameter}
}

// detailed is a domain error that says what its client is to be shown.
type detailed interface {
	Detail() (parameter, message string)
}

// rule maps the domain errors that errors.Is err to an answer; an empty
// message (and parameter) is taken from the error's Detail.
type rule struct {
	err error
	problem
}

// problems is one API family's table from domain errors to answers.
type problems struct {
	rules []rule
	// notFound, methodNotAllowed and internal answer an unknown route, a
	// method a route does not take, and anything unexpected.
	notFound, methodNotAllowed, internal problem
}

// batchFamily answers the KYC batch import family, and every route outside
// the report family (API.md §1).
var batchFamily = problems{
	rules: []rule{
		{auth.ErrNoKey, problem{http.StatusUnauthorized, "0000000100", "Invalid Authorization: missing API key", ""}},
		{auth.ErrBadKey, problem{http.StatusUnauthorized, "0000000200", "Invalid Authorization", ""}},
		{errRateLimited, problem{http.StatusTooManyRequests, "0000000429", "Too many requests", ""}},
		{ingest.ErrKeyUsed, problem{http.StatusBadRequest, "0701010300", "A request with this idempotency key has already been processed", ""}},
		{ingest.ErrTooLarge, problem{http.StatusBadRequest, "0701010100", "File size exceeds the maximum limit of 10 MB", ""}},
		{ingest.ErrTooManyRows, problem{http.StatusBadRequest, "0701010100", "File contains too many rows, limit is 5000", ""}},
		{ingest.ErrInvalidFile, problem{http.StatusBadRequest, "0701010200", "", ""}},
		{ingest.ErrUnreadable, problem{http.StatusBadRequest, "0701010200", "The uploaded file could not be read completely", ""}},
		{ingest.ErrDuplicateCard, problem{http.StatusBadRequest, "0701010200", "duplicate cardProcessorPublicToken found", ""}},
		{ingest.ErrBatchNotFound, problem{http.StatusNotFound, "0701020100", "batch not found", "batchId"}},
		{ingest.ErrBadCursor, problem{http.StatusBadRequest, "0701020200", "cursor is not valid", "cursor"}},
		{ingest.ErrBatchFinished, problem{http.StatusConflict, "0701030300", "batch has already finished", "batchId"}},
		{entity.ErrInvalidType, problem{http.StatusBadRequest, "0702010200", "type must be INDIVIDUAL or BUSINESS", "type"}},
		{entity.ErrBadCursor, problem{http.StatusBadRequest, "0702010200", "cursor is not valid", "cursor"}},
		{entity.ErrDuplicate, problem{http.StatusConflict, "0702010300", "entity with this externalId already exists", "externalId"}},
		{entity.ErrNotFound, problem{http.StatusNotFound, "0702020100", "entity not found", "entityId"}},
		{webhook.ErrInvalid, problem{http.StatusBadRequest, "0703010200", "", ""}},
		{webhook.ErrNotFound, problem{http.StatusNotFound, "0703020100", "webhook endpoint not found", "id"}},
	},
	notFound:         problem{http.StatusNotFound, "0000000404", "Not found", ""},
	methodNotAllowed: problem{http.StatusMethodNotAllowed, "0000000405", "Method not allowed", ""},
	internal:         problem{http.StatusInternalServerError, "0000000500", "Internal server error", ""},
}

// reportFamily answers the bulk usage report family (API.md §2): its code is the message_code.
var reportFamily = problems{
	rules: []rule{
		{auth.ErrNoKey, problem{http.StatusUnauthorized, "unauthorized", "Unauthorized - Invalid or expired token", ""}},
		{auth.ErrBadKey, problem{http.StatusUnauthorized, "unauthorized", "Unauthorized - Invalid or expired token", ""}},
		{errRateLimited, problem{http.StatusTooManyRequests, "rate_limited", "Too many requests", ""}},
		{ingest.ErrBatchNotFound, problem{http.StatusNotFound, "batch_not_found", "Batch not found", ""}},
		{reports.ErrNotFound, problem{http.StatusNotFound, "report_not_found", "Report not found", ""}},
		{reports.ErrTooMany, problem{http.StatusTooManyRequests, "rate_limited", "Too many reports in progress, retry later", ""}},
	},
	notFound:         problem{http.StatusNotFound, "0000000404", "Not found", ""},
	methodNotAllowed: problem{http.StatusMethodNotAllowed, "0000000405", "Method not allowed", ""},
	internal:         problem{http.StatusInternalServerError, "internal_error", "Internal server error", ""},
}

// answer returns the family's answer to err, and whether it is a server error.
func (f problems) answer(err error) (problem, bool) {
	var p *problem
	if errors.As(err, &p) {
		return *p, false
	}
	for _, r := range f.rules {
		if !errors.Is(err, r.err) {
			continue
		}
		answer := r.problem
		var d detailed
		if answer.message == "" && errors.As(err, &d) {
			answer.parameter, answer.message = d.Detail()
		}
		return answer, false
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return f.notFound, false
		case http.StatusMethodNotAllowed:
			return f.methodNotAllowed, false
		case http.StatusUnauthorized: // the dashboard's basic auth
			return f.answer(auth.ErrBadKey)
		}
	}
	return f.internal, true
}

// errorHandler is the one place errors become answers, in the family of the
// request's path. Only server errors are logged as errors; clients get a
// fixed message for them.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		family, report := batchFamily, strings.HasPrefix(c.Request().URL.Path, reportPrefix)
		if report {
			family = reportFamily
		}
		p, internal := family.answer(err)
		if internal {
			logger.ErrorContext(c.Request().Context(), "request failed", "error", err)
		}
		for refusal, seconds := range retryAfter {
			if errors.Is(err, refusal) {
				c.Response().Header().Set("Retry-After", seconds)
			}
		}
		var body any = contract.Error{Code: p.code, Message: p.message, Parameter: p.parameter}
		if report {
			body = contract.Envelope{StatusCode: p.status, Message: p.message, MessageCode: p.code}
		}
		if werr := writeJSON(c, p.status, body); werr != nil {
			logger.WarnContext(c.Request().Context(), "write error response", "error", werr)
		}
	}
}

// retryAfter is the Retry-After of the refusals that have a fixed one (the
// request rate's is the middleware's, from the limiter).
var retryAfter = map[error]string{reports.ErrTooMany: "5", errTooManyUploads: "1", errUploadCapacity: "1"}

// writeJSON writes v as the answer's body with the given status.
func writeJSON(c echo.Context, status int, v any) error {
	b, err := contract.Marshal(v)
	if err != nil {
		return err
	}
	return c.Blob(status, contract.ContentType, b)
}
