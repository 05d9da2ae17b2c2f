package worker_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// TestNoSecretInLogs runs a batch through every outcome, a report and a
// cancel, then reads every line the API and the worker logged: each is JSON,
// and none holds a share token, the API key or a Sumsub credential.
func TestNoSecretInLogs(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	e.StartWorker(t, 5*time.Second)
	key, _ := e.Business(t)
	ids := e.Entities(t, key, 6)
	tokens := []string{"_act-sbx-jwt-green-1", "sim-red-_act-2", "sim-invalid-_act-3", "sim-expired-_act-4", "sim-flaky-_act-5", "sim-level-_act-6"}
	var csv strings.Builder
	csv.WriteString("externalId,shareToken\n")
	for i, id := range ids {
		fmt.Fprintf(&csv, "%s,%s\n", id, tokens[i])
	}
	batchID := e.UploadBatch(t, key, []byte(csv.String()))
	e.WaitBatch(t, key, batchID, 30*time.Second)
	// Sumsub's expired-token refusal quotes the token's id, which rebuilds
	// the token: neither the records nor the report show it.
	recs := e.Call(t, http.MethodGet, "/entity/kyc/import/batch/"+batchID+"/records", key, nil)
	if !strings.Contains(string(recs.Body), "is invalid now") || strings.Contains(string(recs.Body), "_act-") {
		t.Errorf("records: want the expired token's message without its id: %s", recs.Body)
	}
	r := e.Call(t, http.MethodPost, "/api/v1/stamper-v2/bulk-usage-report/initiate", key, map[string]string{"client_id": batchID})
	if report := reportCSV(t, e, key, r.JSON(t)["data"].(map[string]any)["client_id"].(string)); !strings.Contains(report, "is invalid now") || strings.Contains(report, "_act-") {
		t.Errorf("report: want the expired token's message without its id:\n%s", report)
	}
	e.Call(t, http.MethodPost, "/entity/kyc/import/batch/"+batchID+"/cancel", key, nil)
	// A refused upload whose rows are echoed in the error message.
	e.Upload(t, key, "bad", []byte("externalId,shareToken\nnot-a-uuid,_act-sbx-jwt-secret-7\n"))

	// Every token of the test holds "_act-", and so does every id Sumsub quotes.
	secrets := []string{"_act-", key, e.Worker.Sumsub.SecretKey, e.Worker.Sumsub.AppToken}
	lines := strings.Split(strings.TrimSpace(e.Logs.String()), "\n")
	if len(lines) < 20 {
		t.Fatalf("only %d log lines: the run did not happen", len(lines))
	}
	for i, line := range lines {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("log line %d is not JSON: %s", i, line)
		}
		if entry["msg"] == "request" && entry["request_id"] == nil {
			t.Errorf("request logged without a request id: %s", line)
		}
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("log line %d holds the secret %q: %s", i, s, line)
			}
		}
	}
}

// reportCSV waits for a report to be built and returns its CSV.
func reportCSV(t *testing.T, e *apitest.Env, key, reportID string) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		d := e.Call(t, http.MethodGet, "/api/v1/stamper-v2/bulk-usage-report/download?client_id="+reportID, key, nil).JSON(t)["data"].(map[string]any)
		if d["status"] != "success" {
			continue
		}
		resp, err := http.Get(d["link"].(string))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("report download: %d %v", resp.StatusCode, err)
		}
		return string(b)
	}
	t.Fatal("report not built within 20 s")
	return ""
}
