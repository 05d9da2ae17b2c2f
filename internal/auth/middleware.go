package auth

import (
	"errors"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

const businessKey = "auth.business"

// Middleware authenticates every request with its API key and stores the
// calling business for handlers (see Business). It returns ErrNoKey or
// ErrBadKey for the API family's error handler to answer.
func (s *Store) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			key := KeyFromRequest(c.Request())
			if key == "" {
				return ErrNoKey
			}
			business, err := s.Authenticate(c.Request().Context(), key)
			if err != nil {
				return err
			}
			c.Set(businessKey, business)
			return next(c)
		}
	}
}

// KeyFromRequest returns the API key of r from, in order, `Authorization:
// Bearer <key>`, a bare `Authorization: <key>` (as the import API's published
// client sends it) and `X-API-Key: <key>`.
func KeyFromRequest(r *http.Request) string {
	if h := strings.TrimSpace(r.Header.Get("Authorization")); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(rest)
		}
		return h
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

// Business returns the business authenticated by Middleware.
func Business(c echo.Context) uuid.UUID {
	id, ok := c.Get(businessKey).(uuid.UUID)
	if !ok {
		panic(errors.New("auth.Business called on a route without auth.Middleware"))
	}
	return id
}
