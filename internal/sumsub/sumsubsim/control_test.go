package sumsubsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
)

func TestStatsAndReset(t *testing.T) {
	t.Parallel()
	clk := newClock(start)
	sim, url := newSim(t, sumsubsim.Config{RateLimit: 2, Now: clk.Now})
	c := newClient(url, clk.Now)
	for _, token := range []string{"tok-1", "tok-1", "tok-2"} { // imported, reused, rate-limited
		_, _ = c.ReuseApplicant(t.Context(), token, "")
	}

	resp, err := http.Get(url + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]int
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("stats %s: %v", body, err)
	}
	want := map[string]int{"requests": 3, "successfulImports": 1, "reusedTokenAttempts": 1, "rejected429": 1, "maxRequestsInAnySecond": 2,
		"injected503": 0, "stalls": 0, "lostAnswers": 0, "burst429": 0, "webhooksSent": 0, "webhooksFailed": 0, "outageAnswers": 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stats JSON mismatch (-want +got):\n%s", diff)
	}

	resp, err = http.Post(url+"/_sim/reset", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("reset: status %d, want 204", resp.StatusCode)
	}
	// Neither /_sim/ request counted, and nothing is left.
	if diff := cmp.Diff(sumsubsim.Stats{}, sim.Stats()); diff != "" {
		t.Errorf("stats after reset mismatch (-want +got):\n%s", diff)
	}
	if got := sim.Imports("tok-1") + sim.Seen("tok-1"); got != 0 {
		t.Errorf("Imports+Seen of tok-1 after reset = %d, want 0", got)
	}
	// The used token and the full window are forgotten too.
	a, err := c.ReuseApplicant(t.Context(), "tok-1", "")
	if diff := cmp.Diff(green, summarize(t, a, err)); diff != "" {
		t.Errorf("outcome after reset mismatch (-want +got):\n%s", diff)
	}
}

// getTokens returns what GET /_sim/tokens says.
func getTokens(tb testing.TB, url string) map[string]sumsubsim.TokenStats {
	tb.Helper()
	resp, err := http.Get(url + "/_sim/tokens")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("/_sim/tokens: status %d", resp.StatusCode)
	}
	var tokens map[string]sumsubsim.TokenStats
	if err := json.NewDecoder(resp.Body).Decode(&tokens); err != nil {
		tb.Fatalf("/_sim/tokens: %v", err)
	}
	return tokens
}
