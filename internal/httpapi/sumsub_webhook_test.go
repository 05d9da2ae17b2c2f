package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// reviewed is an applicantReviewed webhook body as Sumsub sends it.
func reviewed(applicantID, answer, correlationID string, at time.Time) []byte {
	b, err := json.Marshal(map[string]any{
		"applicantId": applicantID, "inspectionId": "insp-1", "correlationId": correlationID,
		"externalUserId": "copy-1", "levelName": "basic-kyc-level", "type": "applicantReviewed",
		"reviewResult": map[string]string{"reviewAnswer": answer}, "reviewStatus": "completed",
		"createdAtMs": at.UTC().Format("2006-01-02 15:04:05.000"),
	})
	if err != nil {
		panic(err)
	}
	return b
}

// postWebhook sends body to the webhook endpoint with the digest headers
// (an empty alg or digest leaves its header out).
func postWebhook(tb testing.TB, e *apitest.Env, body []byte, alg, digest string) apitest.Response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, e.URL+"/webhooks/sumsub", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if alg != "" {
		req.Header.Set("X-Payload-Digest-Alg", alg)
	}
	if digest != "" {
		req.Header.Set("X-Payload-Digest", digest)
	}
	return e.Do(tb, req)
}

// sign returns body's digest by alg with the test webhook secret.
func sign(tb testing.TB, alg string, body []byte) string {
	tb.Helper()
	d, ok := sumsub.WebhookDigest(apitest.WebhookSecret, alg, body)
	if !ok {
		tb.Fatalf("unknown algorithm %q", alg)
	}
	return d
}

// linkedEntity creates an entity whose applicant is applicantID, PENDING,
// as a batch row leaves it, and returns its external id.
func linkedEntity(tb testing.TB, e *apitest.Env, key, applicantID string) string {
	tb.Helper()
	ext := e.Entities(tb, key, 1)[0]
	if _, err := e.Pool.Exec(context.Background(), `
		UPDATE entities SET sumsub_applicant_id = $1, kyc_status = 'PENDING' WHERE external_id = $2`, applicantID, ext); err != nil {
		tb.Fatal(err)
	}
	return ext.String()
}

func getEntity(tb testing.TB, e *apitest.Env, key, ref string) string {
	tb.Helper()
	r := e.Call(tb, http.MethodGet, "/entity/"+ref, key, nil)
	if r.Status != http.StatusOK {
		tb.Fatalf("get entity: %d %s", r.Status, r.Body)
	}
	return string(r.Body)
}

func TestSumsubWebhook(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{SumsubWebhook: true})
	key, _ := e.Business(t)
	applicant := fmt.Sprintf("%024x", uuid.New().ID())
	ref := linkedEntity(t, e, key, applicant)
	const ok = `{"ok":true}`
	const unauthorized = `{"code":"0704010100","message":"Invalid payload digest","parameter":""}`
	t0 := time.Date(2025, 8, 5, 15, 31, 57, 0, time.UTC)

	pending := getEntity(t, e, key, ref)
	red := reviewed(applicant, "RED", "req-bad", t0)
	for name, tt := range map[string]struct{ alg, digest string }{
		"no digest":         {},
		"wrong digest":      {digest: sign(t, sumsub.DigestHMACSHA256, []byte("another body"))},
		"other secret":      {digest: func() string { d, _ := sumsub.WebhookDigest("not-the-secret", "", red); return d }()},
		"not hex":           {digest: "zz" + sign(t, sumsub.DigestHMACSHA256, red)[2:]},
		"wrong algorithm":   {alg: sumsub.DigestHMACSHA512, digest: sign(t, sumsub.DigestHMACSHA256, red)},
		"unknown algorithm": {alg: "HMAC_MD5_HEX", digest: sign(t, sumsub.DigestHMACSHA256, red)},
	} {
		r := postWebhook(t, e, red, tt.alg, tt.digest)
		if r.Status != http.StatusUnauthorized || string(r.Body) != unauthorized {
			t.Errorf("%s: %d %s, want 401 %s", name, r.Status, r.Body, unauthorized)
		}
	}
	if diff := cmp.Diff(pending, getEntity(t, e, key, ref)); diff != "" {
		t.Fatalf("entity changed by refused webhooks (-before +after):\n%s", diff)
	}

	// A good digest (SHA-256 by default) approves the entity, once.
	green := reviewed(applicant, "GREEN", "req-green", t0.Add(time.Second))
	if r := postWebhook(t, e, green, "", sign(t, sumsub.DigestHMACSHA256, green)); r.Status != http.StatusOK || string(r.Body) != ok {
		t.Fatalf("good webhook: %d %s, want 200 %s", r.Status, r.Body, ok)
	}
	approved := getEntity(t, e, key, ref)
	var got map[string]any
	json.Unmarshal([]byte(approved), &got)
	if got["kycStatus"] != "APPROVED" || got["sumsubApplicantId"] != applicant {
		t.Fatalf("after GREEN: %s, want APPROVED", approved)
	}
	for _, alg := range []string{"", sumsub.DigestHMACSHA256} { // replays, with and without the header
		if r := postWebhook(t, e, green, alg, sign(t, sumsub.DigestHMACSHA256, green)); r.Status != http.StatusOK {
			t.Errorf("replay: %d %s", r.Status, r.Body)
		}
	}
	if diff := cmp.Diff(approved, getEntity(t, e, key, ref)); diff != "" {
		t.Errorf("a replay changed the entity (-before +after):\n%s", diff)
	}

	// SHA-1 and SHA-512 are Sumsub's other algorithms; later reviews apply, an older one does not.
	for _, tt := range []struct {
		alg, answer string
		at          time.Duration
		want        string
	}{
		{sumsub.DigestHMACSHA1, "RED", 2 * time.Second, "REJECTED"},
		{sumsub.DigestHMACSHA512, "GREEN", 3 * time.Second, "APPROVED"},
		{sumsub.DigestHMACSHA256, "RED", 500 * time.Millisecond, "APPROVED"}, // older than the last: kept, not applied
	} {
		body := reviewed(applicant, tt.answer, "req-"+tt.alg+tt.answer, t0.Add(tt.at))
		if r := postWebhook(t, e, body, tt.alg, sign(t, tt.alg, body)); r.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", tt.alg, r.Status, r.Body)
		}
		json.Unmarshal([]byte(getEntity(t, e, key, ref)), &got)
		if got["kycStatus"] != tt.want {
			t.Errorf("%s %s: kycStatus %v, want %s", tt.alg, tt.answer, got["kycStatus"], tt.want)
		}
	}

	// Other webhooks and unknown applicants are taken and ignored.
	before := getEntity(t, e, key, ref)
	for name, body := range map[string][]byte{
		"other type":        []byte(`{"type":"applicantCreated","applicantId":"` + applicant + `"}`),
		"not completed":     []byte(`{"type":"applicantReviewed","applicantId":"` + applicant + `","reviewStatus":"pending","reviewResult":{"reviewAnswer":"RED"}}`),
		"unknown applicant": reviewed("000000000000000000000000", "RED", "req-unknown", t0.Add(time.Hour)),
	} {
		if r := postWebhook(t, e, body, "", sign(t, sumsub.DigestHMACSHA256, body)); r.Status != http.StatusOK || string(r.Body) != ok {
			t.Errorf("%s: %d %s, want 200 %s", name, r.Status, r.Body, ok)
		}
	}
	if diff := cmp.Diff(before, getEntity(t, e, key, ref)); diff != "" {
		t.Errorf("an ignored webhook changed the entity (-before +after):\n%s", diff)
	}
	var reviews int
	if err := e.Pool.QueryRow(t.Context(), `SELECT count(*) FROM sumsub_reviews WHERE applicant_id = $1`, applicant).Scan(&reviews); err != nil {
		t.Fatal(err)
	}
	if reviews != 4 {
		t.Errorf("%d reviews recorded, want 4 (GREEN, RED, GREEN, the older RED)", reviews)
	}
	if strings.Contains(e.Logs.String(), apitest.WebhookSecret) || strings.Contains(e.Logs.String(), "insp-1") {
		t.Errorf("the logs hold the webhook secret or a body")
	}

	// A signed body that is not JSON is refused.
	junk := []byte("not json")
	if r := postWebhook(t, e, junk, "", sign(t, sumsub.DigestHMACSHA256, junk)); r.Status != http.StatusBadRequest {
		t.Errorf("junk body: %d %s, want 400", r.Status, r.Body)
	}
}

func TestSumsubWebhookNotMountedWithoutSecret(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	body := reviewed("000000000000000000000000", "GREEN", "req-1", time.Now())
	r := postWebhook(t, e, body, "", sign(t, sumsub.DigestHMACSHA256, body))
	if r.Status != http.StatusNotFound {
		t.Errorf("without SUMSUB_WEBHOOK_SECRET: %d %s, want 404", r.Status, r.Body)
	}
}

// TestSumsubWebhookEndToEnd runs the whole loop: a pending import leaves
// the entity PENDING; the simulator's webhook then approves or rejects it.
func TestSumsubWebhookEndToEnd(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{SumsubWebhook: true})
	e.StartWorker(t, 5*time.Second)
	key, _ := e.Business(t)
	ids := e.Entities(t, key, 2)
	csv := fmt.Sprintf("externalId,shareToken\n%s,%s\n%s,%s\n",
		ids[0], apitest.Token(sumsubsim.PrefixPending, 2), ids[1], apitest.Token(sumsubsim.PrefixPendingRed, 3))
	batch := e.UploadBatch(t, key, []byte(csv))
	if b := e.WaitBatch(t, key, batch, 10*time.Second); b["status"] != "completed" || b["processedRecords"] != 2.0 {
		t.Fatalf("batch: %v", b)
	}
	status := func(id uuid.UUID) any {
		var m map[string]any
		json.Unmarshal([]byte(getEntity(t, e, key, id.String())), &m)
		return m["kycStatus"]
	}
	for _, id := range ids {
		if got := status(id); got != "PENDING" {
			t.Errorf("entity %s after the batch: %v, want PENDING (the review is not done yet)", id, got)
		}
	}
	want := map[uuid.UUID]string{ids[0]: "APPROVED", ids[1]: "REJECTED"}
	deadline := time.Now().Add(apitest.WebhookDelay + 10*time.Second)
	for id, w := range want {
		for status(id) != w {
			if time.Now().After(deadline) {
				t.Fatalf("entity %s: %v, want %s via the webhook; sim stats %+v", id, status(id), w, e.Sim.Stats())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if s := e.Sim.Stats(); s.WebhooksSent != 2 {
		t.Errorf("sim sent %d webhooks, want 2", s.WebhooksSent)
	}
	// The records show the review too.
	var recs struct {
		Records []struct {
			Row          int    `json:"row"`
			ReviewStatus string `json:"reviewStatus"`
		} `json:"records"`
	}
	json.Unmarshal(e.Call(t, http.MethodGet, "/entity/kyc/import/batch/"+batch+"/records", key, nil).Body, &recs)
	if len(recs.Records) != 2 || recs.Records[0].ReviewStatus != "completed" || recs.Records[1].ReviewStatus != "completed" {
		t.Errorf("records after the reviews: %+v, want both reviews completed", recs.Records)
	}
}

// TestSumsubWebhookSlowBody: the route needs no key, so a client sending its
// body slowly gets ten seconds, not the five minutes an upload gets.
func TestSumsubWebhookSlowBody(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{SumsubWebhook: true})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprint(conn, "POST /webhooks/sumsub HTTP/1.1\r\nHost: kycbatch\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"type\":")
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a slow body: %v", err)
	}
	res.Body.Close()
	if took := time.Since(start); took < 9*time.Second || took > 30*time.Second || res.StatusCode != http.StatusBadRequest {
		t.Errorf("slow body answered %d after %s, want 400 after about 10 s", res.StatusCode, took)
	}
}
