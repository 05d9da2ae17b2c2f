// Package sumsubhook applies the reviews Sumsub's applicantReviewed webhooks
// report: it reads the webhook's body and, in one transaction, approves or
// rejects the entities holding the applicant (entity) and shows the review
// on the batch records that imported it (ingest). It owns no table. The
// webhook's digest is checked before (sumsub.VerifyWebhook).
package sumsubhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/ingest"
)

// MaxBodyBytes bounds a webhook's body; Sumsub's are a few kilobytes.
const MaxBodyBytes = 1 << 20

// ErrNotJSON answers a body that is not a JSON object.
var ErrNotJSON = errors.New("payload must be a JSON object")

// createdAtLayout is how Sumsub writes createdAtMs: "2020-02-21 13:23:19.002", UTC.
const createdAtLayout = "2006-01-02 15:04:05.000"

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

// Parse reads a webhook's body. It returns the completed review it reports,
// or ok false for every other webhook (other types, reviews not completed,
// answers that decide nothing), which are taken and ignored; ErrNotJSON
// when the body is not a JSON object.
func Parse(body []byte) (r entity.Review, ok bool, err error) {
	var p payload
	// Unmarshal takes a JSON null into a struct without a word: the body
	// must be an object.
	if err := json.Unmarshal(body, &p); err != nil || !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		return entity.Review{}, false, ErrNotJSON
	}
	if p.Type != "applicantReviewed" || p.ApplicantID == "" || p.ReviewStatus != "completed" ||
		p.ReviewResult == nil || !entity.ValidAnswer(p.ReviewResult.ReviewAnswer) {
		return entity.Review{}, false, nil
	}
	r = entity.Review{
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
	return r, true, nil
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

// Apply records the review and applies it to the entities holding its
// applicant and, when it is the applicant's latest, to the batch records
// that imported it, in one transaction. A replay changes nothing.
func Apply(ctx context.Context, pool *pgxpool.Pool, r entity.Review) (entity.Applied, error) {
	var res entity.Applied
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		if res, err = entity.ApplyReview(ctx, tx, r); err != nil || !res.Recorded || !res.Latest {
			return err
		}
		return ingest.MarkReviewed(ctx, tx, r.ApplicantID, r.Answer)
	})
	if err != nil {
		return entity.Applied{}, fmt.Errorf("apply review of applicant %s: %w", r.ApplicantID, err)
	}
	return res, nil
}
