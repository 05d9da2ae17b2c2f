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
// For chaos tests and drills, Config.Faults makes the simulator fail, stall
// or refuse requests at random, or go down as a whole (an outage), and
// Stats counts each fault apart.
//
// Paths outside Sumsub's API help tests, benchmarks and drills, unsigned
// and not counted: GET /_sim/stats returns Stats as JSON; GET /_sim/tokens
// returns, for every share token seen, {"seen": n, "imports": n, "lost": bool}
// (TokenStats), so that a test in another process checks that no token was
// imported twice and that answers were lost only where the simulator lost
// them; GET and POST /_sim/faults read and change the faults at run time
// (faultsBody); and POST /_sim/reset forgets everything.
package sumsubsim

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
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

// Close cancels the webhooks pending or being sent and waits for their
// goroutines to end. The simulator still answers requests.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.senders.Wait()
}

// ServeHTTP answers like Sumsub: it checks the signature (401), then bursts
// and the rate limit (429), waits Config.Latency, and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	// The simulator's clock, which tests may set, is the one its answers tell.
	w.Header().Set("Date", s.cfg.Now().UTC().Format(http.TimeFormat))
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
	switch s.inOutage() {
	case Outage503:
		writeError(w, http.StatusServiceUnavailable, errorBody{Description: unavailable})
		return
	case Outage401:
		writeError(w, http.StatusUnauthorized, errorBody{Description: signatureMismatch})
		return
	case OutageTimeout:
		// Never answered: the client's timeout decides.
		select {
		case <-r.Context().Done():
		case <-s.stopCtx.Done():
		}
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

// writeError sends a Sumsub error body with the status as its code and a
// fresh correlationId.
func writeError(w http.ResponseWriter, status int, b errorBody) {
	b.Code = status
	b.CorrelationID = "req-" + uuid.NewString()
	writeJSON(w, status, b)
}

// writeJSON sends v as the JSON body of an answer with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.WriteHeader(status)
	// Encoding this package's plain structs cannot fail; a write error means
	// the client has gone, and there is no one left to tell.
	_ = json.NewEncoder(w).Encode(v)
}
