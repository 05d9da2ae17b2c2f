package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/rediskey"
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

// errRateLimited is a business over its request rate (API_RATE_LIMIT).
var errRateLimited = errors.New("too many requests")

// limitRate holds each business to its request rate, shared by every API
// process (a GCRA in Redis, the library the Sumsub limiter uses): perSecond
// sustained, a burst of twice as many. It runs right after authenticate and
// puts the IETF RateLimit headers on every answer; over the rate, a 429
// with Retry-After. When Redis cannot say, requests pass.
func limitRate(rdb redis.UniversalClient, perSecond int, logger *slog.Logger) echo.MiddlewareFunc {
	limiter := redis_rate.NewLimiter(rdb)
	limit := redis_rate.Limit{Rate: perSecond, Burst: 2 * perSecond, Period: time.Second}
	policy := fmt.Sprintf(`"default";q=%d;w=1`, perSecond)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			ctx := c.Request().Context()
			res, err := limiter.Allow(ctx, rediskey.APIRate+auth.BusinessFrom(ctx).String(), limit)
			if err != nil {
				logger.WarnContext(ctx, "request rate unknown (Redis); letting the request through", "error", err)
				return next(c)
			}
			h := c.Response().Header()
			h.Set("RateLimit-Policy", policy)
			h.Set("RateLimit", fmt.Sprintf(`"default";r=%d;t=%d`, res.Remaining, ceilSeconds(res.ResetAfter)))
			if res.Allowed == 0 {
				h.Set("Retry-After", strconv.Itoa(max(1, ceilSeconds(res.RetryAfter))))
				return errRateLimited
			}
			return next(c)
		}
	}
}

// ceilSeconds is d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int {
	return int((max(d, 0) + time.Second - 1) / time.Second)
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
