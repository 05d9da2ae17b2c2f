// Package sumsubhook receives Sumsub's webhooks: an applicantReviewed
// webhook, once its X-Payload-Digest checks out, approves or rejects the
// entities holding the applicant. Replays change nothing.
package sumsubhook

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/apperr"
	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/web"
)

// MaxBodyBytes bounds a webhook's body; Sumsub's are a few kilobytes.
const MaxBodyBytes = 1 << 20

// Errors of the webhook endpoint *(ours)*, in the batch family's body.
var (
	ErrBadDigest = apperr.New(apperr.Unauthorized, "0704010100", "Invalid payload digest")
	errTooLarge  = apperr.New(apperr.Invalid, "0704010200", "Payload too large")
	errBadJSON   = apperr.New(apperr.Invalid, "0704010200", "Payload must be a JSON object")
)

// createdAtLayout is how Sumsub writes createdAtMs: "2020-02-21 13:23:19.002", UTC.
const createdAtLayout = "2006-01-02 15:04:05.000"

// Handler serves POST /webhooks/sumsub.
type Handler struct {
	store  *Store
	secret string
	logger *slog.Logger
}

// NewHandler returns a Handler that checks digests with secret (Sumsub's
// webhook secret) and applies reviews to store.
func NewHandler(store *Store, secret string, logger *slog.Logger) *Handler {
	return &Handler{store: store, secret: secret, logger: logger}
}

// payload is the part of Sumsub's webhook body we read.
type payload struct {
	Type           string `json:"type"`
	ApplicantID    string `json:"applicantId"`
	InspectionID   string `json:"inspectionId"`
	CorrelationID  string `json:"correlationId"`
	ExternalUserID string `json:"externalUserId"`
	LevelName      string `json:"levelName"`
	ReviewStatus   string `json:"reviewStatus"`
	CreatedAtMs    string `json:"createdAtMs"`
	ReviewResult   *struct {
		ReviewAnswer     string `json:"reviewAnswer"`
		ReviewRejectType string `json:"reviewRejectType"`
	} `json:"reviewResult"`
}

// okBody is the answer to every webhook taken.
var okBody = struct {
	OK bool `json:"ok"`
}{OK: true}

// Receive handles POST /webhooks/sumsub. A bad or missing digest, or an
// unknown algorithm, gets 401 and changes nothing. Every webhook it takes is
// answered 200, applied or not (other types, applicants not linked yet, replays),
// since Sumsub retries anything else. Neither the secret nor the body is
// ever logged.
func (h *Handler) Receive(c echo.Context) error {
	req := c.Request()
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxBodyBytes+1))
	if err != nil {
		return errBadJSON
	}
	if len(body) > MaxBodyBytes {
		return errTooLarge
	}
	if !sumsub.VerifyWebhook(h.secret, req.Header.Get("X-Payload-Digest-Alg"), body, req.Header.Get("X-Payload-Digest")) {
		return ErrBadDigest
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		return errBadJSON
	}
	ctx := req.Context()
	log := h.logger.With(slog.String("webhook_type", p.Type), slog.String("applicant_id", p.ApplicantID))
	if p.Type != "applicantReviewed" || p.ApplicantID == "" || p.ReviewStatus != "completed" ||
		p.ReviewResult == nil || kycStatus[p.ReviewResult.ReviewAnswer] == "" {
		log.InfoContext(ctx, "sumsub webhook ignored")
		return web.JSON(c, http.StatusOK, okBody)
	}
	r := Review{
		ApplicantID:   p.ApplicantID,
		EventKey:      eventKey(p, body),
		Answer:        p.ReviewResult.ReviewAnswer,
		RejectType:    p.ReviewResult.ReviewRejectType,
		LevelName:     p.LevelName,
		CorrelationID: p.CorrelationID,
	}
	if t, err := time.Parse(createdAtLayout, p.CreatedAtMs); err == nil {
		r.ReviewedAt = t
	}
	res, err := h.store.Apply(ctx, r)
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
	return web.JSON(c, http.StatusOK, okBody)
}

// eventKey names one webhook of an applicant, the same for its replays.
func eventKey(p payload, body []byte) string {
	switch {
	case p.CorrelationID != "":
		return "correlation:" + p.CorrelationID
	case p.CreatedAtMs != "":
		return "created:" + p.CreatedAtMs
	}
	sum := sha256.Sum256(body)
	return "body:" + hex.EncodeToString(sum[:])
}
