package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Codes of the batch family (API.md §1) that callers commonly branch on.
const (
	CodeMissingAPIKey      = "0000000100"
	CodeInvalidAPIKey      = "0000000200"
	CodeInternal           = "0000000500"
	CodeFileTooLarge       = "0701010100" // file over 10 MB or over 5,000 rows
	CodeUploadInvalid      = "0701010200" // headers, missing file, CSV validation
	CodeIdempotencyKeyUsed = "0701010300"
	CodeBatchNotFound      = "0701020100"
	CodeEntityInvalid      = "0702010200"
	CodeEntityExists       = "0702010300"
	CodeEntityNotFound     = "0702020100"
)

// Error is an error answer of the API. Both families fill it: the batch
// family's {"code","message","parameter"} and the report family's envelope,
// whose message_code becomes Code.
type Error struct {
	Method     string // of the request
	URL        string // of the request, without its query
	StatusCode int    // HTTP status
	Code       string // the contract's code: "0701020100", "report_not_found"...
	Message    string // the contract's message
	Parameter  string // the offending field (batch family), or empty
	RetryAfter string // the Retry-After header, if any
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	s := fmt.Sprintf("%s %s: %d", e.Method, e.URL, e.StatusCode)
	if e.Code != "" {
		s += " " + e.Code
	}
	s += ": " + msg
	if e.Parameter != "" {
		s += " (parameter " + e.Parameter + ")"
	}
	return s
}

// Temporary says whether the request may succeed if sent again later
// (429 and 5xx).
func (e *Error) Temporary() bool {
	return retryable(e.StatusCode)
}

// readError turns a non-2xx answer into an *Error, closing its body.
func readError(res *http.Response, method, url string) *Error {
	defer res.Body.Close()
	e := &Error{Method: method, URL: url, StatusCode: res.StatusCode, RetryAfter: res.Header.Get("Retry-After")}
	b, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
	var body struct {
		Code        string `json:"code"`
		Message     string `json:"message"`
		Parameter   string `json:"parameter"`
		MessageCode string `json:"message_code"`
	}
	if json.Unmarshal(b, &body) == nil {
		e.Code, e.Message, e.Parameter = body.Code, body.Message, body.Parameter
		if e.Code == "" {
			e.Code = body.MessageCode
		}
	}
	return e
}

// StatusCode returns the HTTP status of an API error in err's chain, or 0.
func StatusCode(err error) int {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.StatusCode
	}
	return 0
}

// ErrorCode returns the contract's code of an API error in err's chain, or "".
func ErrorCode(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return ""
}

// IsNotFound reports whether err is a 404 answer: an unknown object, or
// another business's.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// IsUnauthorized reports whether err is a 401 answer: no key, or an unknown
// or revoked one.
func IsUnauthorized(err error) bool { return StatusCode(err) == http.StatusUnauthorized }

// IsConflict reports whether err is a 409 answer (an entity's externalId
// already taken).
func IsConflict(err error) bool { return StatusCode(err) == http.StatusConflict }

// IsValidation reports whether err is a 400 or 422 answer: the request was
// refused as invalid and sending it again will not help.
func IsValidation(err error) bool {
	s := StatusCode(err)
	return s == http.StatusBadRequest || s == http.StatusUnprocessableEntity
}
