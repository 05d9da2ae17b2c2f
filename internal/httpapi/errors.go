package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/apperr"
	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/web"
)

// reportPrefix starts every path of the bulk usage report family, whose
// errors use its envelope instead of the batch family's body.
const reportPrefix = "/api/v1/stamper-v2/"

// The authentication errors of the batch family, from the contract.
var (
	errNoKey  = apperr.New(apperr.Unauthorized, "0000000100", "Invalid Authorization: missing API key")
	errBadKey = apperr.New(apperr.Unauthorized, "0000000200", "Invalid Authorization")
	errServer = apperr.New(apperr.Internal, "0000000500", "Internal server error")
)

var statusOf = map[apperr.Kind]int{
	apperr.Internal:      http.StatusInternalServerError,
	apperr.Invalid:       http.StatusBadRequest,
	apperr.Unauthorized:  http.StatusUnauthorized,
	apperr.NotFound:      http.StatusNotFound,
	apperr.Conflict:      http.StatusConflict,
	apperr.Unprocessable: http.StatusUnprocessableEntity,
}

// batchBody is the error body of the KYC batch import family.
type batchBody struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Parameter string `json:"parameter"`
}

// reportBody is the envelope of the bulk usage report family.
type reportBody struct {
	Data        any    `json:"data"`
	StatusCode  int    `json:"status_code"`
	Success     bool   `json:"success"`
	Message     string `json:"message"`
	MessageCode string `json:"message_code"`
}

// errorHandler is the one place errors become responses. Only server errors
// are logged as errors; clients get a fixed message for them.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		e := classify(err)
		if e.Kind == apperr.Internal {
			logger.ErrorContext(c.Request().Context(), "request failed", "error", err)
		}
		status := statusOf[e.Kind]
		var werr error
		if strings.HasPrefix(c.Request().URL.Path, reportPrefix) {
			werr = web.JSON(c, status, reportBody{StatusCode: status, Message: reportMessage(e), MessageCode: reportCode(e)})
		} else {
			werr = web.JSON(c, status, batchBody{Code: e.Code, Message: e.Message, Parameter: e.Parameter})
		}
		if werr != nil {
			logger.WarnContext(c.Request().Context(), "write error response", "error", werr)
		}
	}
}

// classify turns any error into one a client may see.
func classify(err error) *apperr.Error {
	if e, ok := apperr.As(err); ok {
		return e
	}
	switch {
	case errors.Is(err, auth.ErrNoKey):
		return errNoKey
	case errors.Is(err, auth.ErrBadKey):
		return errBadKey
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return apperr.New(apperr.NotFound, "0000000404", "Not found")
		case http.StatusUnauthorized: // the dashboard's basic auth
			return errBadKey
		case http.StatusMethodNotAllowed:
			return apperr.New(apperr.Invalid, "0000000405", "Method not allowed")
		}
	}
	return errServer
}

// reportMessage and reportCode give the report family's message and
// message_code for e: authentication errors have their own fixed wording there.
func reportMessage(e *apperr.Error) string {
	switch e {
	case errNoKey, errBadKey:
		return "Unauthorized - Invalid or expired token"
	case errServer:
		return "Internal server error"
	}
	return e.Message
}

func reportCode(e *apperr.Error) string {
	switch e {
	case errNoKey, errBadKey:
		return "unauthorized"
	case errServer:
		return "internal_error"
	}
	return e.Code
}
