package sumsubsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
)

const webhookSecret = "test-webhook-secret"

// receiver is a webhook endpoint that refuses the first delivery of each
// applicant with 503, checks digests and keeps what it took.
type receiver struct {
	mu       sync.Mutex
	attempts map[string]int            // applicant id → deliveries
	taken    map[string]map[string]any // applicant id → body taken
	bad      int                       // deliveries whose digest did not check out
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if r.Header.Get("X-Payload-Digest-Alg") != sumsub.DigestHMACSHA256 ||
		!sumsub.VerifyWebhook(webhookSecret, sumsub.DigestHMACSHA256, body, r.Header.Get("X-Payload-Digest")) {
		rc.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		rc.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id, _ := m["applicantId"].(string)
	if rc.attempts[id]++; rc.attempts[id] == 1 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	rc.taken[id] = m
	w.WriteHeader(http.StatusOK)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.taken)
}

func TestWebhookAfterPendingReview(t *testing.T) {
	t.Parallel()
	rc := &receiver{attempts: map[string]int{}, taken: map[string]map[string]any{}}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	sim, url := newSim(t, sumsubsim.Config{RateLimit: 1000, Webhook: sumsubsim.Webhook{URL: hook.URL, Secret: webhookSecret, Delay: 50 * time.Millisecond}})
	t.Cleanup(sim.Close)
	c := newClient(url, nil)

	want := map[string]string{} // applicant id → answer
	for token, answer := range map[string]string{
		sumsubsim.PrefixPending + "1": "GREEN", sumsubsim.PrefixPendingRed + "1": "RED",
		"tok-approved": "", sumsubsim.PrefixRed + "1": "", // completed at import: no webhook
	} {
		a, err := c.ReuseApplicant(t.Context(), token, "")
		if err != nil {
			t.Fatalf("ReuseApplicant(%s): %v", token, err)
		}
		if answer != "" {
			if a.Review.Status != "pending" {
				t.Errorf("%s imported with review %+v, want pending", token, a.Review)
			}
			want[a.ID] = answer
		}
	}
	waitFor(t, func() bool { return sim.Stats().WebhooksSent == 2 })
	time.Sleep(100 * time.Millisecond) // no stray webhook comes late

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.bad != 0 || len(rc.taken) != 2 {
		t.Fatalf("receiver took %d webhooks and refused %d bad ones, want 2 and 0", len(rc.taken), rc.bad)
	}
	for id, answer := range want {
		m := rc.taken[id]
		if rc.attempts[id] != 2 {
			t.Errorf("applicant %s: %d deliveries, want 2 (the first refused)", id, rc.attempts[id])
		}
		result := map[string]any{"reviewAnswer": answer}
		if answer == "RED" {
			result["reviewRejectType"] = "FINAL"
		}
		for field, w := range map[string]any{"type": "applicantReviewed", "applicantId": id, "reviewStatus": "completed",
			"levelName": sumsubsim.DefaultLevel, "reviewResult": result} {
			if diff := cmp.Diff(w, m[field]); diff != "" {
				t.Errorf("applicant %s: %s (-want +got):\n%s", id, field, diff)
			}
		}
		for _, field := range []string{"inspectionId", "correlationId", "externalUserId", "createdAtMs"} {
			if s, _ := m[field].(string); s == "" {
				t.Errorf("applicant %s: %s is empty", id, field)
			}
		}
		// The status endpoint answers the completed review too.
		review, err := c.ApplicantStatus(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if review.Status != "completed" || review.Answer != answer {
			t.Errorf("applicant %s: status %+v, want completed %s", id, review, answer)
		}
	}
	if got := sim.Stats(); got.WebhooksSent != 2 || got.WebhooksFailed != 0 {
		t.Errorf("stats: %d webhooks sent, %d failed, want 2 and 0", got.WebhooksSent, got.WebhooksFailed)
	}
}

func TestWebhookCancelledByClose(t *testing.T) {
	t.Parallel()
	rc := &receiver{attempts: map[string]int{}, taken: map[string]map[string]any{}}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	sim, url := newSim(t, sumsubsim.Config{})
	// Set after the start, as the dev server does once its API listens.
	sim.SetWebhook(sumsubsim.Webhook{URL: hook.URL, Secret: webhookSecret, Delay: time.Hour})
	if _, err := newClient(url, nil).ReuseApplicant(t.Context(), sumsubsim.PrefixPending+"1", ""); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { sim.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5 s")
	}
	if rc.count() != 0 || sim.Stats().WebhooksSent != 0 {
		t.Errorf("a webhook was sent after Close")
	}
}
