package sumsubsim

import "net/http"

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
	// OutageAnswers counts the requests an outage took (a timeout's
	// swallowed request counts).
	OutageAnswers int `json:"outageAnswers"`
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

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Reset forgets everything: counters, used and lost tokens, applicants,
// the rate window and the faults, so that one simulator serves several
// benchmark runs.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = Faults{}
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
	case r.Method == http.MethodGet && r.URL.Path == "/_sim/faults":
		writeJSON(w, http.StatusOK, s.faultsBody())
	case r.Method == http.MethodPost && r.URL.Path == "/_sim/faults":
		if err := s.changeFaults(r.Body); err != nil {
			writeError(w, http.StatusBadRequest, errorBody{Description: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, s.faultsBody())
	default:
		writeError(w, http.StatusNotFound, errorBody{Description: "Not found"})
	}
}
