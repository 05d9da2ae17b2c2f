package auth

import (
	"context"
	"errors"

	"github.com/google/uuid"
)

type callerKey struct{}

// WithBusiness returns a context carrying the authenticated business: the
// HTTP layer puts it there once the API key checks out, and the domain reads
// it with BusinessFrom, so that no store or service takes a caller argument
// it could get wrong, and none knows of HTTP.
func WithBusiness(ctx context.Context, business uuid.UUID) context.Context {
	return context.WithValue(ctx, callerKey{}, business)
}

// BusinessFrom returns the business authenticated for ctx. Code reached
// without one is wired wrongly (a route outside the authenticated group), so
// it panics rather than act for nobody; the HTTP server recovers it as a 500.
func BusinessFrom(ctx context.Context) uuid.UUID {
	id, ok := ctx.Value(callerKey{}).(uuid.UUID)
	if !ok {
		panic(errors.New("auth.BusinessFrom: no authenticated business in the context"))
	}
	return id
}
