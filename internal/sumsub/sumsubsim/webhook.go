package sumsubsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/sumsub"
)

// Webhook says where and how the simulator sends Sumsub's webhooks.
type Webhook struct {
	// URL receives the webhooks (POST); empty: none are sent.
	URL string
	// Secret signs each body: X-Payload-Digest, HMAC_SHA256_HEX.
	Secret string
	// Delay is how long after the import of a PrefixPending token its review
	// completes and its webhook is sent.
	Delay time.Duration
}

// Sending webhooks: an answer other than 2xx, or none, is retried this many
// times in all, the waits doubling from webhookRetryDelay.
const (
	webhookAttempts   = 5
	webhookRetryDelay = 200 * time.Millisecond
	webhookTimeout    = 10 * time.Second
)

// SetWebhook replaces the webhook configuration for imports from now on,
// for servers that learn their receiver's address after the simulator is made.
func (s *Server) SetWebhook(w Webhook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhook = w
}

// completeReview waits hook.Delay, completes the applicant's review with
// result and sends its applicantReviewed webhook. An applicant forgotten
// meanwhile (Reset) gets none.
func (s *Server) completeReview(hook Webhook, a applicantBody, level string, result reviewResult) {
	defer s.senders.Done()
	if !sleep(s.stopCtx, hook.Delay) {
		return
	}
	s.mu.Lock()
	st, ok := s.applicants[a.ID]
	if ok {
		st.review = review{ReviewStatus: "completed", ReviewResult: &result}
		s.applicants[a.ID] = st
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	body, err := json.Marshal(webhookBody{
		ApplicantID:    a.ID,
		InspectionID:   fmt.Sprintf("%08x%016x", rand.Uint32(), rand.Uint64()),
		CorrelationID:  "req-" + uuid.NewString(),
		ExternalUserID: a.ExternalUserID,
		LevelName:      level,
		Type:           "applicantReviewed",
		ReviewResult:   result,
		ReviewStatus:   "completed",
		CreatedAtMs:    s.cfg.Now().UTC().Format("2006-01-02 15:04:05.000"),
		ClientID:       a.ClientID,
	})
	if err != nil {
		panic(err) // a plain struct of strings always encodes
	}
	digest, _ := sumsub.WebhookDigest(hook.Secret, sumsub.DigestHMACSHA256, body)
	wait := webhookRetryDelay
	for attempt := 1; ; attempt++ {
		if s.postWebhook(hook.URL, digest, body) {
			s.mu.Lock()
			s.stats.WebhooksSent++
			s.mu.Unlock()
			return
		}
		if attempt == webhookAttempts || !sleep(s.stopCtx, wait) {
			break
		}
		wait *= 2
	}
	s.mu.Lock()
	s.stats.WebhooksFailed++
	s.mu.Unlock()
}

// postWebhook sends one webhook and reports whether it was answered 2xx.
func (s *Server) postWebhook(url, digest string, body []byte) bool {
	req, err := http.NewRequestWithContext(s.stopCtx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Payload-Digest", digest)
	req.Header.Set("X-Payload-Digest-Alg", sumsub.DigestHMACSHA256)
	res, err := s.hooks.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxBody))
	return res.StatusCode >= 200 && res.StatusCode < 300
}

// webhookBody is Sumsub's applicantReviewed webhook.
type webhookBody struct {
	ApplicantID    string       `json:"applicantId"`
	InspectionID   string       `json:"inspectionId"`
	CorrelationID  string       `json:"correlationId"`
	ExternalUserID string       `json:"externalUserId"`
	LevelName      string       `json:"levelName"`
	Type           string       `json:"type"`
	ReviewResult   reviewResult `json:"reviewResult"`
	ReviewStatus   string       `json:"reviewStatus"`
	CreatedAtMs    string       `json:"createdAtMs"`
	ClientID       string       `json:"clientId"`
}
