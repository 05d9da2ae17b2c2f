// Package apperr is the error vocabulary of kycbatch: every error a client can
// see is an *Error of one Kind carrying the contract's code and message, so
// that each API family's error handler maps it to its own body without
// knowing where it came from.
package apperr

import (
	"errors"
	"fmt"
)

// Kind classifies an error the way HTTP clients see it.
type Kind int

// The kinds of errors; each maps to one HTTP status.
const (
	Internal      Kind = iota // 500: a bug or an unavailable dependency
	Invalid                   // 400: the request is malformed or breaks a rule
	Unauthorized              // 401: no key, or a key that is not valid
	NotFound                  // 404: absent, or belongs to another business
	Conflict                  // 409: clashes with what exists
	Unprocessable             // 422: well-formed but missing what it needs
)

// Error is an error a client is allowed to see.
type Error struct {
	Kind      Kind
	Code      string // the contract's code, e.g. "0701010200" or "report_not_found"
	Message   string // the contract's message, shown to the client as is
	Parameter string // the offending field, when there is one
}

func (e *Error) Error() string {
	if e.Parameter != "" {
		return fmt.Sprintf("%s (%s): %s", e.Code, e.Parameter, e.Message)
	}
	return e.Code + ": " + e.Message
}

// New returns an error of kind k with the contract's code and message.
func New(k Kind, code, message string) *Error {
	return &Error{Kind: k, Code: code, Message: message}
}

// WithParameter returns a copy of e naming the offending field.
func (e *Error) WithParameter(p string) *Error {
	c := *e
	c.Parameter = p
	return &c
}

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
