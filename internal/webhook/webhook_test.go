package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kycbatch/kycbatch/client"
	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// delivery is one POST a receiver got.
type delivery struct {
	Header http.Header
	Body   []byte
}

// receiver is a webhook endpoint: it answers 500 to its first failures
// requests, then 200, and hands every request to the test.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	failures int
	got      chan delivery
}

func newReceiver(tb testing.TB, failures int) *receiver {
	tb.Helper()
	r := &receiver{failures: failures, got: make(chan delivery, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.got <- delivery{Header: req.Header.Clone(), Body: body}
		r.mu.Lock()
		fail := r.failures > 0
		r.failures--
		r.mu.Unlock()
		if fail {
			http.Error(w, "try again", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	tb.Cleanup(r.Close)
	return r
}

// next returns the next delivery, failing the test after timeout.
func (r *receiver) next(tb testing.TB, timeout time.Duration) delivery {
	tb.Helper()
	select {
	case d := <-r.got:
		return d
	case <-time.After(timeout):
		tb.Fatalf("no webhook within %s", timeout)
		return delivery{}
	}
}

// verify checks a delivery's signature the way a Standard Webhooks receiver
// does, independently of the package's signer, and returns the event.
func verify(tb testing.TB, secret string, d delivery) map[string]any {
	tb.Helper()
	id, ts, sigs := d.Header.Get("webhook-id"), d.Header.Get("webhook-timestamp"), d.Header.Get("webhook-signature")
	if d.Header.Get("Content-Type") != "application/json" {
		tb.Errorf("Content-Type = %q", d.Header.Get("Content-Type"))
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		tb.Errorf("webhook-timestamp %q is not now", ts)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		tb.Fatalf("secret %q: %v", secret, err)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, d.Body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	ok := false
	for _, s := range strings.Fields(sigs) {
		if v, sig, _ := strings.Cut(s, ","); v == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
			ok = true
		}
	}
	if !ok {
		tb.Errorf("webhook-signature %q does not verify (want v1,%s)", sigs, want)
	}
	if err := client.VerifyWebhook(secret, d.Header, d.Body, 0); err != nil {
		tb.Errorf("client.VerifyWebhook: %v", err)
	}
	var ev map[string]any
	if err := json.Unmarshal(d.Body, &ev); err != nil {
		tb.Fatalf("event is not JSON: %v\n%s", err, d.Body)
	}
	if ev["id"] != id {
		tb.Errorf("event id %v, webhook-id %q", ev["id"], id)
	}
	return ev
}

// register creates an endpoint and returns its id and secret.
func register(tb testing.TB, e *apitest.Env, key, url string, events ...string) (id, secret string) {
	tb.Helper()
	if events == nil {
		events = []string{}
	}
	r := e.Call(tb, http.MethodPost, "/webhook-endpoints", key, map[string]any{"url": url, "events": events})
	if r.Status != http.StatusCreated {
		tb.Fatalf("register endpoint: %d %s", r.Status, r.Body)
	}
	m := r.JSON(tb)
	return m["id"].(string), m["secret"].(string)
}

// waitDeliveries polls an endpoint's deliveries until it lists n attempts
// (each is stored just after the receiver answers) and returns the body.
func waitDeliveries(tb testing.TB, e *apitest.Env, key, id string, n int) []byte {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := e.Call(tb, http.MethodGet, "/webhook-endpoints/"+id+"/deliveries", key, nil)
		if r.Status != http.StatusOK {
			tb.Fatalf("deliveries: %d %s", r.Status, r.Body)
		}
		var got struct{ Deliveries []any }
		if err := json.Unmarshal(r.Body, &got); err != nil {
			tb.Fatal(err)
		}
		if len(got.Deliveries) >= n || time.Now().After(deadline) {
			return r.Body
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var secretPattern = regexp.MustCompile(`^whsec_[A-Za-z0-9+/]{43}=$`)

func TestBatchCompletedAndReportReady(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, _ := e.Business(t)
	rcv := newReceiver(t, 0)
	id, secret := register(t, e, key, rcv.URL+"/hooks", "batch.completed", "report.ready")
	if !secretPattern.MatchString(secret) {
		t.Errorf("secret %q is not whsec_ + base64 of 32 bytes", secret)
	}
	list := e.Call(t, http.MethodGet, "/webhook-endpoints", key, nil)
	if list.Status != http.StatusOK || strings.Contains(string(list.Body), secret) || !strings.Contains(string(list.Body), id) {
		t.Errorf("list: %d %s", list.Status, list.Body)
	}

	batchID := e.UploadBatch(t, key, apitest.CSVFile("wh", e.Entities(t, key, 3)))
	e.StartWorker(t, 5*time.Second)
	e.WaitBatch(t, key, batchID, 20*time.Second)

	ev := verify(t, secret, rcv.next(t, 10*time.Second))
	status := e.Call(t, http.MethodGet, "/entity/kyc/import/batch/"+batchID, key, nil).JSON(t)
	if ev["type"] != "batch.completed" || !strings.HasPrefix(ev["id"].(string), "msg_") || ev["timestamp"] == nil {
		t.Errorf("event: %v", ev)
	}
	if diff := cmp.Diff(status, ev["data"]); diff != "" {
		t.Errorf("batch.completed data is not the batch's status body (-GET +event):\n%s", diff)
	}

	r := e.Call(t, http.MethodPost, "/api/v1/stamper-v2/bulk-usage-report/initiate", key, map[string]string{"client_id": batchID})
	reportID := r.JSON(t)["data"].(map[string]any)["client_id"].(string)
	ev = verify(t, secret, rcv.next(t, 10*time.Second))
	data, _ := ev["data"].(map[string]any)
	if ev["type"] != "report.ready" || data["client_id"] != reportID || data["status"] != "success" ||
		data["bulk_stamp_client_id"] != batchID || !strings.HasPrefix(fmt.Sprint(data["link"]), "http") {
		t.Errorf("report.ready event: %v", ev)
	}
	wantStats := map[string]any{"pending": float64(0), "available": float64(3), "failed": float64(0)}
	if diff := cmp.Diff(wantStats, data["stats"]); diff != "" {
		t.Errorf("report stats (-want +got):\n%s", diff)
	}

	deliveries := waitDeliveries(t, e, key, id, 2)
	var got struct {
		Deliveries []struct {
			EventType    string `json:"eventType"`
			Attempt      int    `json:"attempt"`
			Status       string `json:"status"`
			ResponseCode *int   `json:"responseCode"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal(deliveries, &got); err != nil || len(got.Deliveries) != 2 ||
		got.Deliveries[0].EventType != "report.ready" || got.Deliveries[1].EventType != "batch.completed" ||
		got.Deliveries[0].Status != "delivered" || got.Deliveries[0].ResponseCode == nil || *got.Deliveries[0].ResponseCode != 204 {
		t.Errorf("deliveries: %s", deliveries)
	}
	checkQuietAndSecretUnlogged(t, e, rcv, secret)
}

func TestRetriesKeepTheEventID(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, _ := e.Business(t)
	rcv := newReceiver(t, 2)
	id, secret := register(t, e, key, rcv.URL) // every event type

	// A batch cancelled before any worker runs raises batch.cancelled.
	batchID := e.UploadBatch(t, key, apitest.CSVFile("wh", e.Entities(t, key, 2)))
	if r := e.Call(t, http.MethodPost, "/entity/kyc/import/batch/"+batchID+"/cancel", key, nil); r.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	// A second cancel raises nothing.
	e.Call(t, http.MethodPost, "/entity/kyc/import/batch/"+batchID+"/cancel", key, nil)
	e.StartWorker(t, 5*time.Second)

	var ids []string
	for range 3 {
		ev := verify(t, secret, rcv.next(t, 15*time.Second))
		if ev["type"] != "batch.cancelled" || ev["data"].(map[string]any)["status"] != "cancelled" {
			t.Errorf("event: %v", ev)
		}
		ids = append(ids, ev["id"].(string))
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("webhook-id changed between attempts: %v", ids)
	}

	var got struct {
		Deliveries []struct {
			EventID      string  `json:"eventId"`
			EventType    string  `json:"eventType"`
			Attempt      int     `json:"attempt"`
			Status       string  `json:"status"`
			ResponseCode *int    `json:"responseCode"`
			Error        *string `json:"error"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal(waitDeliveries(t, e, key, id, 3), &got); err != nil {
		t.Fatal(err)
	}
	type row struct {
		Attempt int
		Status  string
		Code    int
		Failed  bool
	}
	var rows []row
	for _, d := range got.Deliveries {
		if d.EventID != ids[0] || d.EventType != "batch.cancelled" || d.ResponseCode == nil {
			t.Errorf("delivery: %+v", d)
			continue
		}
		rows = append(rows, row{d.Attempt, d.Status, *d.ResponseCode, d.Error != nil})
	}
	want := []row{{3, "delivered", 204, false}, {2, "failed", 500, true}, {1, "failed", 500, true}}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("deliveries, newest first (-want +got):\n%s", diff)
	}
	// Each attempt is counted once stored (a moment after the API shows it).
	failed, delivered := `kycbatch_webhook_delivery_attempts_total{result="failed"}`, `kycbatch_webhook_delivery_attempts_total{result="delivered"}`
	m := e.Scrape(t)
	for deadline := time.Now().Add(5 * time.Second); m[delivered] != 1 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		m = e.Scrape(t)
	}
	if m[failed] != 2 || m[delivered] != 1 {
		t.Errorf("/metrics: %s %v, %s %v; want 2 and 1", failed, m[failed], delivered, m[delivered])
	}
	checkQuietAndSecretUnlogged(t, e, rcv, secret)
}

// An endpoint that cannot be reached: the attempt's error says why, without
// the endpoint's URL (its path and query may be secrets), in the deliveries,
// the logs and the task's error.
func TestUnreachableEndpointErrorHoldsNoURL(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, _ := e.Business(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	id, _ := register(t, e, key, "http://"+addr+"/hooks/T0SECRETPATH?token=s3cret-query", "batch.cancelled")
	batchID := e.UploadBatch(t, key, apitest.CSVFile("unreachable", e.Entities(t, key, 1)))
	e.Call(t, http.MethodPost, "/entity/kyc/import/batch/"+batchID+"/cancel", key, nil)
	e.StartWorker(t, 5*time.Second)
	body := string(waitDeliveries(t, e, key, id, 1))
	if !strings.Contains(body, "connection refused") {
		t.Errorf("deliveries: want the attempt's error (connection refused): %s", body)
	}
	for _, secret := range []string{"T0SECRETPATH", "s3cret-query"} {
		if strings.Contains(body, secret) || strings.Contains(e.Logs.String(), secret) {
			t.Errorf("the endpoint's URL (%s) is in the deliveries or the logs:\n%s", secret, body)
		}
	}
}

func TestPrivateURLsRefused(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{BlockPrivateWebhookURLs: true})
	key, _ := e.Business(t)
	for _, url := range []string{
		"http://127.0.0.1:8080/hook",
		"http://10.0.0.1/hook",
		"http://169.254.169.254/latest/meta-data/",
		"http://localhost:9000/hook", // a name that resolves to loopback
		"http://[::1]/hook",
		"http://0.0.0.0/",
		"http://192.168.1.10/",
		"http://[::ffff:127.0.0.1]/",
		"ftp://example.com/hook",
		"not a url",
		"",
	} {
		r := e.Call(t, http.MethodPost, "/webhook-endpoints", key, map[string]any{"url": url, "events": []string{"batch.completed"}})
		m := r.JSON(t)
		if r.Status != http.StatusBadRequest || m["code"] != "0703010200" || m["parameter"] != "url" {
			t.Errorf("%q: %d %s", url, r.Status, r.Body)
		}
	}
	r := e.Call(t, http.MethodPost, "/webhook-endpoints", key, map[string]any{"url": "https://93.184.215.14/hook", "events": []string{"batch.sent"}})
	if m := r.JSON(t); r.Status != http.StatusBadRequest || m["parameter"] != "events" {
		t.Errorf("unknown event type: %d %s", r.Status, r.Body)
	}
	// A public address is accepted.
	if r := e.Call(t, http.MethodPost, "/webhook-endpoints", key, map[string]any{"url": "https://93.184.215.14/hook"}); r.Status != http.StatusCreated {
		t.Errorf("public address: %d %s", r.Status, r.Body)
	}
}

func TestEndpointsBelongToTheirBusiness(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	keyA, _ := e.Business(t)
	keyB, _ := e.Business(t)
	id, _ := register(t, e, keyA, "http://127.0.0.1:1/hook", "report.failed")

	if r := e.Call(t, http.MethodGet, "/webhook-endpoints", keyB, nil); string(r.Body) != `{"endpoints":[]}` {
		t.Errorf("B lists: %s", r.Body)
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodDelete, "/webhook-endpoints/" + id},
		{http.MethodGet, "/webhook-endpoints/" + id + "/deliveries"},
		{http.MethodDelete, "/webhook-endpoints/not-a-uuid"},
	} {
		r := e.Call(t, c.method, c.path, keyB, nil)
		want := `{"code":"0703020100","message":"webhook endpoint not found","parameter":"id"}`
		if r.Status != http.StatusNotFound || string(r.Body) != want {
			t.Errorf("B %s %s: %d %s", c.method, c.path, r.Status, r.Body)
		}
	}
	if r := e.Call(t, http.MethodGet, "/webhook-endpoints/"+id+"/deliveries", keyA, nil); r.Status != http.StatusOK || string(r.Body) != `{"deliveries":[]}` {
		t.Errorf("A deliveries: %d %s", r.Status, r.Body)
	}
	if r := e.Call(t, http.MethodDelete, "/webhook-endpoints/"+id, keyA, nil); r.Status != http.StatusNoContent {
		t.Errorf("A delete: %d %s", r.Status, r.Body)
	}
	if r := e.Call(t, http.MethodDelete, "/webhook-endpoints/"+id, keyA, nil); r.Status != http.StatusNotFound {
		t.Errorf("A delete again: %d %s", r.Status, r.Body)
	}
	if r := e.Call(t, http.MethodGet, "/webhook-endpoints", "", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("no key: %d %s", r.Status, r.Body)
	}
}

// TestReconcilerDispatchesLostEvents: an event is recorded in the
// transaction of its change, then its dispatch is enqueued; if Redis loses
// that task, the reconciler dispatches the event from the outbox, once.
func TestReconcilerDispatchesLostEvents(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, _ := e.Business(t)
	rcv := newReceiver(t, 0)
	_, secret := register(t, e, key, rcv.URL, "batch.cancelled")
	batchID := e.UploadBatch(t, key, apitest.CSVFile("wh", e.Entities(t, key, 1)))
	e.Call(t, http.MethodPost, "/entity/kyc/import/batch/"+batchID+"/cancel", key, nil)
	// As if Redis had been flushed before any worker ran, a minute ago.
	if err := e.Inspector.DeleteTask("events", "event:batch.cancelled:"+batchID); err != nil {
		t.Fatalf("delete the dispatch task: %v", err)
	}
	ctx := context.Background()
	for _, table := range []string{"events", "webhook_endpoints"} {
		if _, err := e.Pool.Exec(ctx, `UPDATE `+table+` SET created_at = created_at - interval '1 minute'`); err != nil {
			t.Fatal(err)
		}
	}
	e.StartWorker(t, 5*time.Second) // a worker reconciles at start
	ev := verify(t, secret, rcv.next(t, 15*time.Second))
	if ev["type"] != "batch.cancelled" || ev["data"].(map[string]any)["batchId"] != batchID {
		t.Errorf("event: %v", ev)
	}
	var events, undispatched int
	if err := e.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE dispatched_at IS NULL) FROM events`).Scan(&events, &undispatched); err != nil {
		t.Fatal(err)
	}
	if events != 1 || undispatched != 0 {
		t.Errorf("%d events stored, %d undispatched; want the one, dispatched", events, undispatched)
	}
	checkQuietAndSecretUnlogged(t, e, rcv, secret)
}

// TestReconcilerRequeuesLostDeliveries: a delivery whose retry Redis lost is
// re-enqueued by the reconciler from PostgreSQL.
func TestReconcilerRequeuesLostDeliveries(t *testing.T) {
	t.Parallel()
	// The first attempt fails; its retry would come a minute later.
	e := apitest.New(t, apitest.Options{WebhookRetryBase: time.Minute})
	key, _ := e.Business(t)
	rcv := newReceiver(t, 1)
	_, secret := register(t, e, key, rcv.URL, "batch.cancelled")
	batchID := e.UploadBatch(t, key, apitest.CSVFile("wh", e.Entities(t, key, 1)))
	e.Call(t, http.MethodPost, "/entity/kyc/import/batch/"+batchID+"/cancel", key, nil)
	stop := e.StartWorker(t, 5*time.Second)
	first := verify(t, secret, rcv.next(t, 15*time.Second))
	stop() // lets the attempt be recorded and its retry scheduled

	ctx := context.Background()
	var deliveryID string
	if err := e.Pool.QueryRow(ctx, `SELECT id::text FROM webhook_deliveries WHERE attempts = 1`).Scan(&deliveryID); err != nil {
		t.Fatal(err)
	}
	if err := e.Inspector.DeleteTask("webhooks", "webhook:"+deliveryID); err != nil {
		t.Fatalf("delete the retry: %v", err)
	}
	if _, err := e.Pool.Exec(ctx, `UPDATE webhook_deliveries SET updated_at = now() - interval '2 minutes', next_attempt_at = now()`); err != nil {
		t.Fatal(err)
	}
	e.StartWorker(t, 5*time.Second) // a worker reconciles at start
	ev := verify(t, secret, rcv.next(t, 15*time.Second))
	if ev["type"] != "batch.cancelled" || ev["id"] != first["id"] {
		t.Errorf("event %v, want the retry of %v", ev, first["id"])
	}
	checkQuietAndSecretUnlogged(t, e, rcv, secret)
}

// checkQuietAndSecretUnlogged checks that the receiver gets nothing more and
// that the endpoint's secret is in no log line.
func checkQuietAndSecretUnlogged(t *testing.T, e *apitest.Env, rcv *receiver, secret string) {
	t.Helper()
	select {
	case d := <-rcv.got:
		t.Errorf("unexpected extra webhook: %s", d.Body)
	case <-time.After(200 * time.Millisecond):
	}
	if strings.Contains(e.Logs.String(), strings.TrimPrefix(secret, "whsec_")) {
		t.Error("the webhook secret is in the logs")
	}
}
