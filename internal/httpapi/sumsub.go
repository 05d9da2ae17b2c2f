package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/sumsubhook"
)

// Errors of POST /webhooks/sumsub *(ours)*, in the batch family's body.
var (
	errBadDigest   = newProblem(http.StatusUnauthorized, "0704010100", "Invalid payload digest", "")
	errHookTooBig  = newProblem(http.StatusBadRequest, "0704010200", "Payload too large", "")
	errHookNotJSON = newProblem(http.StatusBadRequest, "0704010200", "Payload must be a JSON object", "")
)

// sumsubHookHandler serves POST /webhooks/sumsub.
type sumsubHookHandler struct {
	pool   *pgxpool.Pool
	secret string
	logger *slog.Logger
}

// hookReadTimeout bounds the reading of a webhook's body.
const hookReadTimeout = 10 * time.Second

// okBody is the answer to every webhook taken.
var okBody = struct {
	OK bool `json:"ok"`
}{OK: true}

// receive checks the webhook's digest, then applies the review it reports.
// A bad or missing digest, or an unknown algorithm, gets 401 and changes
// nothing. Every webhook taken is answered 200, applied or not (other types,
// applicants not linked yet, replays), since Sumsub retries anything else.
// Neither the secret nor the body is ever logged.
func (h sumsubHookHandler) receive(c echo.Context) error {
	req := c.Request()
	// The route needs no key: a client that sends its small body slowly
	// gets hookReadTimeout, not the server's five minutes for uploads.
	if err := http.NewResponseController(c.Response()).SetReadDeadline(time.Now().Add(hookReadTimeout)); err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, sumsubhook.MaxBodyBytes+1))
	if err != nil {
		return errHookNotJSON
	}
	if len(body) > sumsubhook.MaxBodyBytes {
		return errHookTooBig
	}
	if !sumsub.VerifyWebhook(h.secret, req.Header.Get("X-Payload-Digest-Alg"), body, req.Header.Get("X-Payload-Digest")) {
		return errBadDigest
	}
	r, ok, err := sumsubhook.Parse(body)
	if err != nil {
		return errHookNotJSON
	}
	ctx := req.Context()
	if !ok {
		h.logger.InfoContext(ctx, "sumsub webhook ignored")
		return writeJSON(c, http.StatusOK, okBody)
	}
	log := h.logger.With(slog.String("applicant_id", r.ApplicantID))
	res, err := sumsubhook.Apply(ctx, h.pool, r)
	if err != nil {
		return err
	}
	switch {
	case !res.Recorded:
		log.InfoContext(ctx, "sumsub webhook replayed: nothing changed")
	case res.Entities == 0:
		log.InfoContext(ctx, "sumsub review kept for an applicant not linked yet")
	default:
		log.InfoContext(ctx, "sumsub review applied", slog.String("review_answer", r.Answer), slog.Int("entities_updated", res.Updated))
	}
	return writeJSON(c, http.StatusOK, okBody)
}
