// Package sumsubsim is a fake Sumsub API for tests, the dev server and
// benchmarks, since the real one cannot be reached from our machines. It
// checks signatures and clock skew, enforces a sliding one-second rate limit,
// treats share tokens as single-use, and answers with Sumsub's bodies. Share
// tokens with a test-mode prefix (PrefixRed and the others) pick an outcome;
// any other token is imported and approved.
//
// With Config.Webhook set, the review of a PrefixPending token completes
// after a delay: the simulator then answers its status as completed and
// sends Sumsub's applicantReviewed webhook, signed, to the webhook URL.
//
// For chaos tests, Config.Faults makes the simulator fail, stall or refuse
// requests at random, and Stats counts each fault apart.
//
// Three paths outside Sumsub's API help tests and benchmarks, unsigned and
// not counted: GET /_sim/stats returns Stats as JSON; GET /_sim/tokens
// returns, for every share token seen, {"seen": n, "imports": n, "lost": bool}
// (TokenStats), so that a test in another process checks that no token was
// imported twice and that answers were lost only where the simulator lost
// them; and POST /_sim/reset forgets everything.
package sumsubsim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
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

// The dev credentials, shared by the dev server and cmd/sumsubsim so that a
// kycbatch configured for one talks to the other: they guard nothing.
const (
	// DevAppToken is the app token the dev simulator accepts.
	DevAppToken = "sbx:kycbatch-dev"
	// DevSecretKey is the secret the dev simulator checks signatures with.
	DevSecretKey = "kycbatch-dev-secret"
	// DevWebhookSecret signs the dev simulator's webhooks.
	DevWebhookSecret = "kycbatch-dev-webhook-secret"
)

// unavailable is the description of every 503, injected or of a flaky token.
const unavailable = "Service temporarily unavailable"

// knownLevels are the levels configured on the simulated account; reuse
// into any other is refused like Sumsub refuses a level it cannot serve.
var knownLevels = map[string]bool{DefaultLevel: true, "levelKyc": true}

// maxSkew is how far X-App-Access-Ts may be from the simulator's clock,
// either way, inclusive: Sumsub's own example clients stamp a minute ahead.
const maxSkew = 60

// maxBody bounds the request bodies read to check signatures.
const maxBody = 1 << 20

// Config of the simulator.
type Config struct {
	// AppToken and SecretKey are the credentials the simulator accepts.
	AppToken, SecretKey string
	// RateLimit is the most requests accepted in any one-second window;
	// DefaultRateLimit when zero. Requests beyond it get 429.
	RateLimit int
	// Latency is added to every signed, admitted request, to make
	// benchmarks look like the real network.
	Latency time.Duration
	// Now is the simulator's clock; time.Now when nil. Tests set it to make
	// clock skew, the rate window and bursts deterministic.
	Now func() time.Time
	// Faults are injected from the start; Server.SetFaults changes them.
	Faults Faults
	// Webhook, when its URL is set, sends applicantReviewed webhooks for
	// PrefixPending tokens; Server.SetWebhook changes it.
	Webhook Webhook
}

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

// Faults the simulator injects, for chaos tests; the zero value injects none.
// One roll of the dice per admitted reuse request with a share token picks a
// 503 with probability FailRate, else a stall with probability StallRate.
type Faults struct {
	// FailRate is the fraction of admitted reuse requests answered 503
	// before anything is imported, like a flaky token's 503.
	FailRate float64
	// StallRate is the fraction of admitted reuse requests that import the
	// token, then wait Stall before answering. If the client gives up or
	// dies meanwhile, the answer is lost though the import happened.
	StallRate float64
	// Stall is how long a stall lasts (e.g. 5s).
	Stall time.Duration
	// BurstEvery and BurstFor make 429 bursts: when the time since the
	// simulator started, modulo BurstEvery, is below BurstFor, every signed
	// request gets 429 without entering the rate window. The first burst
	// begins at the start. No bursts unless both are positive.
	BurstEvery, BurstFor time.Duration
	// Seed seeds the dice, so that a test sending requests one at a time
	// sees the same faults on every run; zero picks a random seed.
	Seed uint64
}

// Stats counts what the simulator saw since it started or was reset, so
// that tests and benchmarks check the client's behaviour from the outside.
type Stats struct {
	// Requests counts every request but those to /_sim/.
	Requests int `json:"requests"`
	// SuccessfulImports counts share tokens imported (200).
	SuccessfulImports int `json:"successfulImports"`
	// ReusedTokenAttempts counts reuse requests for a token already imported.
	ReusedTokenAttempts int `json:"reusedTokenAttempts"`
	// Rejected429 counts requests refused by the rate limit, and only
	// those: the 429s of a burst count in Burst429.
	Rejected429 int `json:"rejected429"`
	// MaxRequestsInAnySecond is the most requests accepted within one
	// sliding second: above Config.RateLimit never, and a client that
	// respects the limit keeps it there or below.
	MaxRequestsInAnySecond int `json:"maxRequestsInAnySecond"`
	// Injected503 counts the 503s of Faults.FailRate; a flaky token's do not count.
	Injected503 int `json:"injected503"`
	// Stalls counts the stalls of Faults.StallRate begun.
	Stalls int `json:"stalls"`
	// LostAnswers counts stalls the client gave up on or died during: their
	// answers were never sent, whatever they were.
	LostAnswers int `json:"lostAnswers"`
	// Burst429 counts the 429s of Faults' bursts.
	Burst429 int `json:"burst429"`
	// WebhooksSent counts webhooks delivered: answered 2xx.
	WebhooksSent int `json:"webhooksSent"`
	// WebhooksFailed counts webhooks given up on after every attempt.
	WebhooksFailed int `json:"webhooksFailed"`
}

// TokenStats is what the simulator knows of one share token, as GET
// /_sim/tokens reports it.
type TokenStats struct {
	// Seen counts requests carrying the token, whatever their outcome.
	Seen int `json:"seen"`
	// Imports counts its successful imports: more than one is a bug.
	Imports int `json:"imports"`
	// Lost reports that the answer to a request carrying it was lost in a
	// stall, so that its client may not know whether it was imported.
	Lost bool `json:"lost"`
}

// Server is the simulated Sumsub API, an http.Handler. It is safe for
// concurrent use.
type Server struct {
	cfg     Config
	api     *http.ServeMux
	started time.Time // by cfg.Now, the origin of the burst windows
	hooks   *http.Client
	// stop ends the webhooks pending or being sent; senders counts them.
	stopCtx context.Context
	stop    context.CancelFunc
	senders sync.WaitGroup

	mu         sync.Mutex
	faults     Faults
	dice       *rand.Rand // rolls the faults; not safe for concurrent use, so under mu
	stats      Stats
	window     []time.Time           // acceptance times within the last second, oldest first
	imports    map[string]int        // share token → successful imports
	seen       map[string]int        // share token → requests carrying it
	attempts   map[string]int        // PrefixFlaky token → attempts that reached the route
	lost       map[string]bool       // share token → an answer carrying it was lost in a stall
	applicants map[string]statusBody // applicant id → its review, for the status endpoint
	webhook    Webhook
	closed     bool // no more webhooks are scheduled
}

// New returns a simulator with cfg's defaults filled in.
func New(cfg Config) *Server {
	if cfg.RateLimit <= 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:        cfg,
		api:        http.NewServeMux(),
		started:    cfg.Now(),
		imports:    map[string]int{},
		seen:       map[string]int{},
		attempts:   map[string]int{},
		lost:       map[string]bool{},
		applicants: map[string]statusBody{},
		webhook:    cfg.Webhook,
		hooks:      &http.Client{Timeout: webhookTimeout},
	}
	s.stopCtx, s.stop = context.WithCancel(context.Background())
	s.SetFaults(cfg.Faults)
	s.api.HandleFunc("POST /resources/api/reusableIdentity/reuse", s.reuse)
	s.api.HandleFunc("GET /resources/applicants/{id}/status", s.status)
	s.api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, errorBody{Description: "Not found"})
	})
	return s
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// SetFaults replaces the faults injected from now on, and seeds the dice
// again from f.Seed. Bursts keep their phase: it counts from the start.
func (s *Server) SetFaults(f Faults) {
	seed := f.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	s.dice = rand.New(rand.NewPCG(seed, seed))
}

// SetWebhook replaces the webhook configuration for imports from now on,
// for servers that learn their receiver's address after the simulator is made.
func (s *Server) SetWebhook(w Webhook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhook = w
}

// Close cancels the webhooks pending or being sent and waits for their
// goroutines to end. The simulator still answers requests.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.senders.Wait()
}

// Reset forgets everything: counters, used and lost tokens, applicants and
// the rate window, so that one simulator serves several benchmark runs. The
// faults stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{}
	s.window = nil
	clear(s.imports)
	clear(s.seen)
	clear(s.attempts)
	clear(s.lost)
	clear(s.applicants)
}

// Tokens returns what the simulator knows of every share token seen.
func (s *Server) Tokens() map[string]TokenStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	tokens := make(map[string]TokenStats, len(s.seen))
	for token, n := range s.seen {
		tokens[token] = TokenStats{Seen: n, Imports: s.imports[token], Lost: s.lost[token]}
	}
	return tokens
}

// Imports returns how many times shareToken was imported, so that tests
// assert that no token was imported twice.
func (s *Server) Imports(shareToken string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.imports[shareToken]
}

// Seen returns how many requests carried shareToken, whatever their outcome.
func (s *Server) Seen(shareToken string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[shareToken]
}

// ServeHTTP answers like Sumsub: it checks the signature (401), then bursts
// and the rate limit (429), waits Config.Latency, and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		s.serveSim(w, r)
		return
	}

	token := r.URL.Query().Get("shareToken")
	s.mu.Lock()
	s.stats.Requests++
	if token != "" {
		s.seen[token]++
	}
	s.mu.Unlock()

	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, errorBody{Description: "Cannot read the request body"})
		return
	}
	if desc := s.checkSignature(r, body); desc != "" {
		writeError(w, http.StatusUnauthorized, errorBody{Description: desc})
		return
	}
	if s.inBurst() || !s.admit() {
		writeError(w, http.StatusTooManyRequests, errorBody{Description: "Too many requests"})
		return
	}
	if s.cfg.Latency > 0 && !sleep(r.Context(), s.cfg.Latency) {
		return
	}
	s.api.ServeHTTP(w, r)
}

// serveSim serves the simulator's own paths.
func (s *Server) serveSim(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/_sim/stats":
		writeJSON(w, http.StatusOK, s.Stats())
	case r.Method == http.MethodGet && r.URL.Path == "/_sim/tokens":
		writeJSON(w, http.StatusOK, s.Tokens())
	case r.Method == http.MethodPost && r.URL.Path == "/_sim/reset":
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusNotFound, errorBody{Description: "Not found"})
	}
}

// checkSignature returns Sumsub's description of what is wrong with the
// request's credentials, or "" when they are right.
func (s *Server) checkSignature(r *http.Request, body []byte) string {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-App-Token")), []byte(s.cfg.AppToken)) != 1 {
		return "App token is invalid"
	}
	ts, err := strconv.ParseInt(r.Header.Get("X-App-Access-Ts"), 10, 64)
	now := s.cfg.Now().Unix()
	if err != nil || ts < now-maxSkew || ts > now+maxSkew {
		return "Request timestamp is too old or too far in the future"
	}
	// RequestURI is the path and query exactly as received: the bytes the
	// client had to sign.
	want := sumsub.Sign(s.cfg.SecretKey, ts, r.Method, r.RequestURI, body)
	if !hmac.Equal([]byte(want), []byte(r.Header.Get("X-App-Access-Sig"))) {
		return "Request signature mismatch"
	}
	return ""
}

// inBurst reports whether the request falls in a 429 burst, and counts it if so.
func (s *Server) inBurst() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults
	if f.BurstEvery <= 0 || f.BurstFor <= 0 {
		return false
	}
	since := s.cfg.Now().Sub(s.started)
	if since < 0 || since%f.BurstEvery >= f.BurstFor {
		return false
	}
	s.stats.Burst429++
	return true
}

// admit enters the request in the sliding one-second window, or reports that
// the window is full. Refused requests stay out of the window.
func (s *Server) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The clock is read under the lock, so that the window stays in order.
	now := s.cfg.Now()
	i := 0
	for i < len(s.window) && now.Sub(s.window[i]) >= time.Second {
		i++
	}
	s.window = s.window[i:]
	if len(s.window) >= s.cfg.RateLimit {
		s.stats.Rejected429++
		return false
	}
	s.window = append(s.window, now)
	s.stats.MaxRequestsInAnySecond = max(s.stats.MaxRequestsInAnySecond, len(s.window))
	return true
}

// fault is what the dice chose for one admitted reuse request.
type fault int

const (
	noFault fault = iota
	fail          // answer 503 before anything else
	stall         // import, then wait before answering
)

// rollFault picks the fault of one admitted reuse request and counts it;
// it returns the stall's length too, read under the same lock.
func (s *Server) rollFault() (fault, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults
	switch x := s.dice.Float64(); {
	case x < f.FailRate:
		s.stats.Injected503++
		return fail, 0
	case x < f.FailRate+f.StallRate:
		s.stats.Stalls++
		return stall, f.Stall
	}
	return noFault, 0
}

// loseAnswer records that the client gave up on a stalled request for token.
func (s *Server) loseAnswer(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.LostAnswers++
	s.lost[token] = true
}

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
		return applicantBody{}, http.StatusUnauthorized, errorBody{Description: s.expiredDescription()}
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

// expiredDescription imitates Sumsub's answer to an expired token with a
// made-up token: the simulator never echoes the real one.
func (s *Server) expiredDescription() string {
	now := s.cfg.Now().UTC()
	return fmt.Sprintf("Token is invalid: Token _act-sbx-jwt-%016x is invalid now: created at %s with ttl 1200 but accessed at %s [source: null]",
		rand.Uint64(), now.Add(-21*time.Minute).Format(time.RFC3339), now.Format(time.RFC3339))
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

// sleep waits d, or less when ctx ends first; it reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errorBody is Sumsub's error body.
type errorBody struct {
	Code          int    `json:"code"`
	ErrorCode     int    `json:"errorCode,omitempty"`
	ErrorName     string `json:"errorName,omitempty"`
	Description   string `json:"description"`
	CorrelationID string `json:"correlationId"`
}

func reuseRefusal(code int, description string) errorBody {
	return errorBody{ErrorCode: code, ErrorName: sumsub.ErrorName(code), Description: description}
}

// review is the review block of an applicant.
type review struct {
	ReviewStatus string        `json:"reviewStatus"`
	ReviewResult *reviewResult `json:"reviewResult,omitempty"`
}

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

// statusBody is the answer of the status endpoint.
type statusBody struct {
	review
	LevelName string `json:"levelName"`
}

// writeError sends a Sumsub error body with the status as its code and a
// fresh correlationId.
func writeError(w http.ResponseWriter, status int, b errorBody) {
	b.Code = status
	b.CorrelationID = "req-" + uuid.NewString()
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.WriteHeader(status)
	// Encoding this file's plain structs cannot fail; a write error means
	// the client has gone, and there is no one left to tell.
	_ = json.NewEncoder(w).Encode(v)
}
