package sumsubsim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/sumsub"
)

// Test-mode prefixes of share tokens, each choosing what the simulator does
// with the token so that tests reach every path of the import code.
const (
	// PrefixRed tokens are imported with a completed, RED, FINAL review.
	PrefixRed = "sim-red-"
	// PrefixPending tokens are imported with a pending review and no result;
	// with Config.Webhook set, the review completes GREEN after its Delay.
	PrefixPending = "sim-pending-"
	// PrefixPendingRed tokens are PrefixPending tokens whose review
	// completes RED (FINAL).
	PrefixPendingRed = "sim-pending-red-"
	// PrefixInvalid tokens are refused: 400, invalid-share-token (10503).
	PrefixInvalid = "sim-invalid-"
	// PrefixExpired tokens are refused as Sumsub refuses an expired token: 401.
	PrefixExpired = "sim-expired-"
	// PrefixLevel tokens are refused for any level: 400, non-suitable-share-token (10504).
	PrefixLevel = "sim-level-"
	// PrefixFlaky tokens get 503 on their first FlakyFailures attempts, then are imported.
	PrefixFlaky = "sim-flaky-"
	// PrefixSlow tokens are imported after SlowDelay, unless the client gives up first.
	PrefixSlow = "sim-slow-"
)

// Behaviour of the test-mode tokens and of the defaults.
const (
	// FlakyFailures is how many attempts of a PrefixFlaky token get 503.
	FlakyFailures = 2
	// SlowDelay is how long a PrefixSlow token takes to import.
	SlowDelay = 2 * time.Second
	// DefaultRateLimit is Config.RateLimit when unset: our contract's 10 requests a second.
	DefaultRateLimit = 10
	// DefaultLevel is the level of a reuse request without levelName.
	DefaultLevel = "basic-kyc-level"
)

// unavailable is the description of every 503, injected or of a flaky token.
const unavailable = "Service temporarily unavailable"

// knownLevels are the levels configured on the simulated account; reuse
// into any other is refused like Sumsub refuses a level it cannot serve.
var knownLevels = map[string]bool{DefaultLevel: true, "levelKyc": true}

// reuse serves POST /resources/api/reusableIdentity/reuse.
func (s *Server) reuse(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	token := q.Get("shareToken")
	level := q.Get("levelName")
	if level == "" {
		level = DefaultLevel
	}
	if token == "" {
		writeError(w, http.StatusBadRequest, reuseRefusal(sumsub.CodeInvalidShareToken, "Share token is missing"))
		return
	}
	if strings.HasPrefix(token, PrefixSlow) && !sleep(r.Context(), SlowDelay) {
		return // the client gave up: nothing is imported
	}
	f, stallFor := s.rollFault()
	if f == fail {
		writeError(w, http.StatusServiceUnavailable, errorBody{Description: unavailable})
		return
	}
	a, status, refusal := s.importToken(token, level)
	if f == stall && !sleep(r.Context(), stallFor) {
		s.loseAnswer(token)
		return // the client gave up: the import, if any, stays done
	}
	if status != http.StatusOK {
		writeError(w, status, refusal)
		return
	}
	writeJSON(w, status, a)
}

// importToken decides the outcome of a reuse request: the applicant and 200,
// or a status and Sumsub's refusal. It records imports; deciding and
// recording under one lock makes single use hold against concurrent requests.
func (s *Server) importToken(token, level string) (applicantBody, int, errorBody) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.imports[token] > 0:
		s.stats.ReusedTokenAttempts++
		return applicantBody{}, http.StatusBadRequest, reuseRefusal(sumsub.CodeInvalidShareToken, "Share token is invalid or has been used")
	case strings.HasPrefix(token, PrefixInvalid):
		return applicantBody{}, http.StatusBadRequest, reuseRefusal(sumsub.CodeInvalidShareToken, "Share token is invalid or has been used")
	case strings.HasPrefix(token, PrefixExpired):
		return applicantBody{}, http.StatusUnauthorized, errorBody{Description: s.expiredDescription(token)}
	case !knownLevels[level] || strings.HasPrefix(token, PrefixLevel):
		return applicantBody{}, http.StatusBadRequest, reuseRefusal(sumsub.CodeNonSuitableShareToken, "Not Reusable KYC for level: "+level)
	}
	if strings.HasPrefix(token, PrefixFlaky) {
		s.attempts[token]++
		if s.attempts[token] <= FlakyFailures {
			return applicantBody{}, http.StatusServiceUnavailable, errorBody{Description: unavailable}
		}
	}

	rev := review{ReviewStatus: "completed", ReviewResult: &reviewResult{ReviewAnswer: "GREEN"}}
	switch {
	case strings.HasPrefix(token, PrefixRed):
		rev.ReviewResult = &reviewResult{ReviewAnswer: "RED", ReviewRejectType: "FINAL"}
	case strings.HasPrefix(token, PrefixPending):
		rev = review{ReviewStatus: "pending"}
	}
	a := applicantBody{
		ID:             fmt.Sprintf("%08x%016x", rand.Uint32(), rand.Uint64()),
		CreatedAt:      s.cfg.Now().UTC().Format(time.DateTime),
		ClientID:       "kycbatch-sim",
		ExternalUserID: "copy-" + uuid.NewString(),
		Review:         rev,
	}
	s.imports[token]++
	s.stats.SuccessfulImports++
	s.applicants[a.ID] = statusBody{review: rev, LevelName: level}
	if strings.HasPrefix(token, PrefixPending) && s.webhook.URL != "" && !s.closed {
		result := reviewResult{ReviewAnswer: "GREEN"}
		if strings.HasPrefix(token, PrefixPendingRed) {
			result = reviewResult{ReviewAnswer: "RED", ReviewRejectType: "FINAL"}
		}
		s.senders.Add(1)
		go s.completeReview(s.webhook, a, level, result)
	}
	return a, http.StatusOK, errorBody{}
}

// expiredDescription is Sumsub's answer to an expired token, which quotes
// the token's id the way Sumsub does.
func (s *Server) expiredDescription(token string) string {
	now := s.cfg.Now().UTC()
	return fmt.Sprintf("Token is invalid: Token %s is invalid now: created at %s with ttl 1200 but accessed at %s [source: null]",
		TokenID(token), now.Add(-21*time.Minute).Format(time.RFC3339), now.Format(time.RFC3339))
}

// TokenID is the id Sumsub quotes of a share token: a JWT's jti (Sumsub's
// share tokens are unsigned JWTs whose claim is that id), else "_act-sim-"
// and the first 16 hex digits of the token's SHA-256.
func TokenID(token string) string {
	if parts := strings.Split(token, "."); len(parts) == 3 {
		if payload, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			var claims struct {
				JTI string `json:"jti"`
			}
			if json.Unmarshal(payload, &claims) == nil && claims.JTI != "" {
				return claims.JTI
			}
		}
	}
	sum := sha256.Sum256([]byte(token))
	return "_act-sim-" + hex.EncodeToString(sum[:8])
}

// status serves GET /resources/applicants/{id}/status.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	st, ok := s.applicants[r.PathValue("id")]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, errorBody{Description: "Applicant not found"})
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// reuseRefusal is a refusal of a reuse request, carrying Sumsub's error
// code and its name as the client reads them.
func reuseRefusal(code int, description string) errorBody {
	return errorBody{ErrorCode: code, ErrorName: sumsub.ErrorName(code), Description: description}
}

// review is the review block of an applicant.
type review struct {
	ReviewStatus string        `json:"reviewStatus"`
	ReviewResult *reviewResult `json:"reviewResult,omitempty"`
}

// reviewResult is the outcome of a completed review, as the applicant, the
// status endpoint and the webhooks report it.
type reviewResult struct {
	ReviewAnswer     string `json:"reviewAnswer"`
	ReviewRejectType string `json:"reviewRejectType,omitempty"`
}

// applicantBody is the answer to a successful reuse.
type applicantBody struct {
	ID             string   `json:"id"`
	CreatedAt      string   `json:"createdAt"`
	ClientID       string   `json:"clientId"`
	ExternalUserID string   `json:"externalUserId"`
	Info           struct{} `json:"info"`
	Review         review   `json:"review"`
}

// statusBody is the answer of the status endpoint.
type statusBody struct {
	review
	LevelName string `json:"levelName"`
}
