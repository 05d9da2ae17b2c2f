package httpapi

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/auth"
)

// authenticate checks every request's API key and puts its business in the
// request's context (auth.WithBusiness) for the domain to read. It returns
// auth.ErrNoKey or auth.ErrBadKey for the family's error handler to answer.
func authenticate(keys *auth.Store) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			key := keyFromRequest(c.Request())
			if key == "" {
				return auth.ErrNoKey
			}
			req := c.Request()
			business, err := keys.Authenticate(req.Context(), key)
			if err != nil {
				return err
			}
			c.SetRequest(req.WithContext(auth.WithBusiness(req.Context(), business)))
			return next(c)
		}
	}
}

// keyFromRequest returns the API key of r from, in order, `Authorization:
// Bearer <key>`, a bare `Authorization: <key>` (as the import API's published
// client sends it) and `X-API-Key: <key>`.
func keyFromRequest(r *http.Request) string {
	if h := strings.TrimSpace(r.Header.Get("Authorization")); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(rest)
		}
		return h
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}
