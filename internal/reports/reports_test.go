package reports_test

import (
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

const reportPath = "/api/v1/stamper-v2/bulk-usage-report/"

// waitReport polls the download endpoint until the report is built or failed.
func waitReport(t testing.TB, e *apitest.Env, key, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := e.Call(t, http.MethodGet, reportPath+"download?client_id="+url.QueryEscape(id), key, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("download: %d %s", r.Status, r.Body)
		}
		data := r.JSON(t)["data"].(map[string]any)
		if s := data["status"]; s == "success" || s == "failed" {
			return data
		}
		if time.Now().After(deadline) {
			t.Fatalf("report not built after 20 s: %s", r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReportEndToEnd(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, _ := e.Business(t)
	ids := e.Entities(t, key, 6)
	var file strings.Builder
	file.WriteString("externalId,shareToken\n")
	tokens := []string{"tok-a", "sim-invalid-b", "tok-c", "sim-level-d", "tok-e", "tok-f"}
	for i, id := range ids {
		fmt.Fprintf(&file, "%s,%s\n", id, tokens[i])
	}
	batchID := e.UploadBatch(t, key, []byte(file.String()))

	// Before the worker runs: the report waits, with the stats of now and no link.
	r := e.Call(t, http.MethodPost, reportPath+"initiate", key, map[string]string{"client_id": batchID})
	early := r.JSON(t)["data"].(map[string]any)["client_id"].(string)
	want := fmt.Sprintf(`{"data":{"client_id":%q,"bulk_stamp_client_id":%q,"status":"pending"},"status_code":200,"success":true,"message":"Success","message_code":"success"}`, early, batchID)
	if r.Status != http.StatusOK || string(r.Body) != want {
		t.Errorf("initiate: %d %s\nwant %s", r.Status, r.Body, want)
	}
	if len(early) != len("bulk_stamper_order_usage_report_")+20 || !strings.HasPrefix(early, "bulk_stamper_order_usage_report_") {
		t.Errorf("report id %q", early)
	}
	d := e.Call(t, http.MethodGet, reportPath+"download?client_id="+early, key, nil)
	wantPending := fmt.Sprintf(`{"data":{"client_id":%q,"bulk_stamp_client_id":%q,"status":"pending","stats":{"pending":6,"available":0,"failed":0},"link":null},"status_code":200,"success":true,"message":"Success","message_code":"success"}`, early, batchID)
	if string(d.Body) != wantPending {
		t.Errorf("download before build:\n got %s\nwant %s", d.Body, wantPending)
	}

	e.StartWorker(t, 5*time.Second)
	e.WaitBatch(t, key, batchID, 20*time.Second)
	waitReport(t, e, key, early) // while it is in progress, an initiate answers it
	r = e.Call(t, http.MethodPost, reportPath+"initiate", key, map[string]string{"client_id": batchID})
	id := r.JSON(t)["data"].(map[string]any)["client_id"].(string)
	data := waitReport(t, e, key, id)
	if diff := cmp.Diff(map[string]any{"pending": 0.0, "available": 4.0, "failed": 2.0}, data["stats"]); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	link := data["link"].(string)
	if !strings.Contains(link, "X-Amz-Expires=600") {
		t.Errorf("link %s does not expire after 600 s", link)
	}

	res, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET link: %d %s", res.StatusCode, body)
	}
	for _, tok := range tokens {
		if strings.Contains(string(body), tok) {
			t.Errorf("the report holds share token %s", tok)
		}
	}
	lines, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"row", "externalId", "status", "applicantId", "reviewStatus", "errorCode", "errorMessage", "attempts", "processedAt"}, lines[0]); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	var got []string
	for _, l := range lines[1:] {
		got = append(got, l[0]+" "+l[1]+" "+l[2]+" "+l[5])
	}
	wantLines := []string{
		"2 " + ids[0].String() + " succeeded ",
		"3 " + ids[1].String() + " failed SUMSUB_INVALID_SHARE_TOKEN",
		"4 " + ids[2].String() + " succeeded ",
		"5 " + ids[3].String() + " failed SUMSUB_NON_SUITABLE_SHARE_TOKEN",
		"6 " + ids[4].String() + " succeeded ",
		"7 " + ids[5].String() + " succeeded ",
	}
	if diff := cmp.Diff(wantLines, got); diff != "" {
		t.Errorf("report lines (-want +got):\n%s", diff)
	}

	// The early report was built by the same worker, as a snapshot of its own time.
	if early := waitReport(t, e, key, early); early["status"] != "success" {
		t.Errorf("early report: %v", early)
	}
	// A second download signs a new link.
	time.Sleep(1100 * time.Millisecond)
	again := waitReport(t, e, key, id)
	if again["link"] == link {
		t.Error("the link was not signed afresh")
	}
}

func TestReportErrors(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("", e.Entities(t, key, 1)))
	id := e.Call(t, http.MethodPost, reportPath+"initiate", key, map[string]string{"client_id": batchID}).JSON(t)["data"].(map[string]any)["client_id"].(string)
	other, _ := e.Business(t)

	notFound := `{"data":null,"status_code":404,"success":false,"message":"Report not found","message_code":"report_not_found"}`
	batchNotFound := `{"data":null,"status_code":404,"success":false,"message":"Batch not found","message_code":"batch_not_found"}`
	required := `{"data":null,"status_code":422,"success":false,"message":"client_id is required","message_code":"validation_error"}`
	tests := []struct {
		name, method, path, key string
		body                    any
		status                  int
		want                    string
	}{
		{"unknown report", http.MethodGet, "download?client_id=bulk_stamper_order_usage_report_AAAAAAAAAAAAAAAAAAAA", key, nil, 404, notFound},
		{"another business's report", http.MethodGet, "download?client_id=" + id, other, nil, 404, notFound},
		{"download without client_id", http.MethodGet, "download", key, nil, 422, required},
		{"initiate without client_id", http.MethodPost, "initiate", key, map[string]string{}, 422, required},
		{"initiate for an unknown batch", http.MethodPost, "initiate", key, map[string]string{"client_id": "f208a887-9fa6-4447-a52b-c1d6e089536f"}, 404, batchNotFound},
		{"initiate for a batch id that is not a UUID", http.MethodPost, "initiate", key, map[string]string{"client_id": "x"}, 404, batchNotFound},
		{"initiate for another business's batch", http.MethodPost, "initiate", other, map[string]string{"client_id": batchID}, 404, batchNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.Call(t, tt.method, reportPath+tt.path, tt.key, tt.body)
			if r.Status != tt.status || string(r.Body) != tt.want {
				t.Errorf("got %d %s\nwant %d %s", r.Status, r.Body, tt.status, tt.want)
			}
		})
	}
}

// TestReconcilerRedrivesLostReport: a report whose task Redis lost is built
// once the reconciler finds it unfinished.
func TestReconcilerRedrivesLostReport(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{ReconcileInterval: time.Second})
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("", e.Entities(t, key, 2)))
	id := e.Call(t, http.MethodPost, reportPath+"initiate", key, map[string]string{"client_id": batchID}).JSON(t)["data"].(map[string]any)["client_id"].(string)
	ctx := t.Context()
	if err := e.Redis.FlushDB(ctx).Err(); err != nil { // the build task is lost
		t.Fatal(err)
	}
	// The report has waited longer than the reconciler lets one wait.
	if _, err := e.Pool.Exec(ctx, `UPDATE reports SET updated_at = now() - interval '5 minutes' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	e.StartWorker(t, 5*time.Second)
	if data := waitReport(t, e, key, id); data["status"] != "success" {
		t.Errorf("report %v", data)
	}
}
