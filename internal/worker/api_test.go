package worker_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

func TestBatchResultsThroughTheAPI(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{SumsubRate: 20})
	key, business := e.Business(t)
	ids := e.Entities(t, key, 7)
	var csv strings.Builder
	csv.WriteString("externalId,shareToken\n")
	for i, id := range ids {
		token := fmt.Sprintf("ok-%d", i)
		if i%3 == 1 {
			token = fmt.Sprintf("sim-invalid-%d", i)
		}
		if i == 6 {
			token = "sim-level-6"
		}
		fmt.Fprintf(&csv, "%s,%s\n", id, token)
	}
	batchID := e.UploadBatch(t, key, []byte(csv.String()))
	path := "/entity/kyc/import/batch/" + batchID

	// Before any worker runs, the batch is pending with an estimate.
	pending := e.Call(t, http.MethodGet, path, key, nil).JSON(t)
	if pending["status"] != "pending" || pending["estimatedCompletionAt"] == nil {
		t.Errorf("pending batch: %v", pending)
	}
	e.StartWorker(t, 5*time.Second)
	final := e.WaitBatch(t, key, batchID, 20*time.Second)

	if final["estimatedCompletionAt"] != nil || final["completedAt"] == nil || final["startedAt"] == nil {
		t.Errorf("finished batch times: %v", final)
	}
	wantSummary := map[string]any{
		"successfulRecords": float64(4),
		"errors": []any{
			map[string]any{"code": "SUMSUB_INVALID_SHARE_TOKEN", "message": "Share token is invalid or has been used", "count": float64(2)},
			map[string]any{"code": "SUMSUB_NON_SUITABLE_SHARE_TOKEN", "message": final["summary"].(map[string]any)["errors"].([]any)[1].(map[string]any)["message"], "count": float64(1)},
		},
	}
	if diff := cmp.Diff(wantSummary, final["summary"]); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}

	// Failed records, two per page.
	var rows []float64
	cursor := ""
	for range 5 {
		r := e.Call(t, http.MethodGet, path+"/records?status=failed&limit=2&cursor="+url.QueryEscape(cursor), key, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("records: %d %s", r.Status, r.Body)
		}
		page := r.JSON(t)
		for _, rec := range page["records"].([]any) {
			m := rec.(map[string]any)
			rows = append(rows, m["row"].(float64))
			if m["status"] != "failed" || m["errorCode"] == nil || m["attempts"] != float64(1) || m["processedAt"] == nil {
				t.Errorf("failed record: %v", m)
			}
			if _, has := m["shareToken"]; has {
				t.Error("a record shows its share token")
			}
		}
		next, ok := page["nextCursor"].(string)
		if !ok {
			break
		}
		cursor = next
	}
	if diff := cmp.Diff([]float64{3, 6, 8}, rows); diff != "" {
		t.Errorf("failed rows (-want +got):\n%s", diff)
	}
	all := e.Call(t, http.MethodGet, path+"/records", key, nil).JSON(t)
	if n := len(all["records"].([]any)); n != 7 || all["nextCursor"] != nil {
		t.Errorf("all records: %d, next %v", n, all["nextCursor"])
	}
	if strings.Contains(string(e.Call(t, http.MethodGet, path+"/records", key, nil).Body), "ok-") {
		t.Error("records show a share token")
	}
	for _, q := range []string{"status=done", "limit=0", "cursor=x"} {
		if r := e.Call(t, http.MethodGet, path+"/records?"+q, key, nil); r.Status != http.StatusBadRequest {
			t.Errorf("records?%s: %d %s", q, r.Status, r.Body)
		}
	}
	other, _ := e.Business(t)
	if r := e.Call(t, http.MethodGet, path+"/records", other, nil); r.Status != http.StatusNotFound {
		t.Errorf("another business's records: %d", r.Status)
	}
	// Each record is one Sumsub call and one outcome; each call had a
	// permit, and an idle worker may take one more that finds no work.
	checkMetrics(t, e, map[string]float64{
		`kycbatch_sumsub_calls_total{outcome="success"}`:                                               4,
		`kycbatch_sumsub_calls_total{outcome="permanent"}`:                                             3,
		`kycbatch_records_processed_total{outcome="succeeded"}`:                                        4,
		`kycbatch_records_processed_total{outcome="failed"}`:                                           3,
		`kycbatch_sumsub_call_duration_seconds_count{outcome="success"}`:                               4,
		`kycbatch_batches{status="completed"}`:                                                         1,
		`kycbatch_http_requests_total{method="POST",route="/entity/kyc/import/batch",status="201"}`:    1,
		`kycbatch_http_request_duration_seconds_count{method="POST",route="/entity/kyc/import/batch"}`: 1,
		`kycbatch_sumsub_calls_by_business_total{business="` + business.String() + `"}`:                7,
		`kycbatch_sumsub_rate_limit`:                                                                   20,
		`kycbatch_dependency_up{dependency="postgres"}`:                                                1,
		`kycbatch_dependency_up{dependency="redis"}`:                                                   1,
		`kycbatch_dependency_up{dependency="s3"}`:                                                      1,
	}, map[string]float64{
		`kycbatch_rate_limiter_wait_seconds_count`:         7,
		`asynq_tasks_processed_total{queue="maintenance"}`: 1,
	})

	want := `{"code":"0701030300","message":"batch has already finished","parameter":"batchId"}`
	if r := e.Call(t, http.MethodPost, path+"/cancel", key, nil); r.Status != http.StatusConflict || string(r.Body) != want {
		t.Errorf("cancel a completed batch: %d %s", r.Status, r.Body)
	}
}

// checkMetrics scrapes /metrics until each series of exact has its value
// and each of atLeast has at least its value: a count is read once the work
// it counts has settled (Asynq counts a task after its handler returned,
// which is after the batch it completed shows completed).
func checkMetrics(t *testing.T, e *apitest.Env, exact, atLeast map[string]float64) {
	t.Helper()
	var wrong []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got := e.Scrape(t)
		wrong = wrong[:0]
		for series, want := range exact {
			if v, ok := got[series]; !ok || v != want {
				wrong = append(wrong, fmt.Sprintf("%s is %v (present: %v), want %v", series, v, ok, want))
			}
		}
		for series, want := range atLeast {
			if v, ok := got[series]; !ok || v < want {
				wrong = append(wrong, fmt.Sprintf("%s is %v (present: %v), want at least %v", series, v, ok, want))
			}
		}
		if len(wrong) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, w := range wrong {
		t.Errorf("/metrics: %s", w)
	}
}
