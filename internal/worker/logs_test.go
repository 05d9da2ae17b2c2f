package worker_test

import (
	"encoding/json"
	"fmt"
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
	e.Call(t, http.MethodPost, "/api/v1/stamper-v2/bulk-usage-report/initiate", key, map[string]string{"client_id": batchID})
	e.Call(t, http.MethodPost, "/entity/kyc/import/batch/"+batchID+"/cancel", key, nil)
	// A refused upload whose rows are echoed in the error message.
	e.Upload(t, key, "bad", []byte("externalId,shareToken\nnot-a-uuid,_act-sbx-jwt-secret-7\n"))
	time.Sleep(500 * time.Millisecond) // the report task logs too

	secrets := append(tokens, "_act-sbx-jwt-secret-7", key, e.Worker.Sumsub.SecretKey, e.Worker.Sumsub.AppToken)
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
