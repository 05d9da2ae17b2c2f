package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/imports"
	"github.com/kycbatch/kycbatch/internal/testing/apitest"
	"github.com/kycbatch/kycbatch/internal/worker"
)

// dashboard calls the Asynq dashboard's own API, as its pages do.
type dashboard struct {
	t *testing.T
	e *apitest.Env
}

// call sends method path (under /monitoring/api) with the ops credentials
// and decodes the answer into out (nil: none), failing on any status but 200.
func (d dashboard) call(method, path string, out any) {
	d.t.Helper()
	req, err := http.NewRequest(method, d.e.URL+"/monitoring/api"+path, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	req.SetBasicAuth(d.e.API.Monitoring.User, d.e.API.Monitoring.Password)
	r := d.e.Do(d.t, req)
	if r.Status != http.StatusOK && r.Status != http.StatusNoContent {
		d.t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
	}
	if out != nil {
		if err := json.Unmarshal(r.Body, out); err != nil {
			d.t.Fatalf("%s %s: %v\n%s", method, path, err, r.Body)
		}
	}
}

// queueStats is a queue's line on the dashboard.
type queueStats struct {
	Queue     string `json:"queue"`
	Paused    bool   `json:"paused"`
	Active    int    `json:"active"`
	Pending   int    `json:"pending"`
	Retry     int    `json:"retry"`
	Archived  int    `json:"archived"`
	Completed int    `json:"completed"`
}

// dashTask is a task as the dashboard lists it.
type dashTask struct {
	ID           string `json:"id"`
	Type         string `json:"type"`
	Payload      string `json:"payload"`
	Retried      int    `json:"retried"`
	ErrorMessage string `json:"error_message"`
	Result       string `json:"result"`
}

func (d dashboard) queue(name string) queueStats {
	d.t.Helper()
	var q struct{ Current queueStats }
	d.call(http.MethodGet, "/queues/"+name, &q)
	return q.Current
}

func (d dashboard) tasks(queue, state string) []dashTask {
	d.t.Helper()
	var res struct {
		Tasks []dashTask `json:"tasks"`
	}
	d.call(http.MethodGet, fmt.Sprintf("/queues/%s/%s_tasks?page=1&size=1000", queue, state), &res)
	return res.Tasks
}

// TestDashboardShowsRecords drives the Asynq dashboard's API while batches
// import at 10/s: every queue is listed from the worker's start; the sumsub
// queue holds a short window of record tasks; a flaky record shows its
// retries; every finished record task completes with its outcome as its
// result, none with a token; a refused token archives nothing; pausing the
// queue stops the simulator's requests (the estimate moving out meanwhile)
// and resuming restarts them; and a
// pending task deleted while paused still ends as a processed record; the
// backlog shows in the metrics.
func TestDashboardShowsRecords(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{SumsubRate: 10, Monitoring: true})
	d := dashboard{t, e}
	e.StartWorker(t, 5*time.Second)

	var queues []queueStats
	for deadline := time.Now().Add(10 * time.Second); len(queues) < len(worker.Queues) && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		d.call(http.MethodGet, "/queues", &struct{ Queues *[]queueStats }{&queues})
	}
	listed := map[string]bool{}
	for _, q := range queues {
		listed[q.Queue] = true
	}
	for _, q := range worker.Queues {
		if !listed[q] {
			t.Errorf("queue %s is not listed on a fresh start (%v)", q, listed)
		}
		d.queue(q) // its page answers 200
	}

	key, business := e.Business(t)
	ids := e.Entities(t, key, 30)
	var csv strings.Builder
	csv.WriteString("externalId,shareToken\n")
	for i, id := range ids {
		token := apitest.Token("dash", i+2)
		switch i {
		case 3:
			token = "sim-flaky-" + token
		case 5:
			token = "sim-invalid-" + token
		}
		fmt.Fprintf(&csv, "%s,%s\n", id, token)
	}
	batchID := e.UploadBatch(t, key, []byte(csv.String()))
	most, seen := 0, 0
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		q := d.queue(imports.Queue)
		most, seen = max(most, q.Pending+q.Active), max(seen, q.Pending+q.Active+q.Retry)
		b := e.Call(t, http.MethodGet, "/entity/kyc/import/batch/"+batchID, key, nil).JSON(t)
		if b["status"] == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch not completed: %v", b)
		}
	}
	t.Logf("the sumsub queue held at most %d record tasks pending or active", most)
	// The window: a second of the rate (10), and the calls in flight.
	if most == 0 || most > 13 {
		t.Errorf("the sumsub queue held up to %d record tasks pending or active, want a short window (1 to 13)", most)
	}
	if seen == 0 {
		t.Error("the dashboard never showed a record task")
	}

	completed := d.tasks(imports.Queue, "completed")
	if len(completed) != len(ids) {
		t.Errorf("%d completed record tasks, want one per record: %d", len(completed), len(ids))
	}
	byRow := map[int]dashTask{}
	for _, task := range completed {
		var p imports.Payload
		if err := json.Unmarshal([]byte(task.Payload), &p); err != nil || task.Type != imports.TypeImport || p.BatchID != batchID {
			t.Errorf("completed task %s: type %s, payload %s (%v)", task.ID, task.Type, task.Payload, err)
		}
		byRow[p.Row] = task
		for i := range ids {
			if tok := apitest.Token("dash", i+2); strings.Contains(task.Payload+task.Result+task.ErrorMessage, tok) {
				t.Errorf("task %s shows a share token", task.ID)
			}
		}
	}
	if r := byRow[5].Result; !strings.Contains(r, `"status":"succeeded"`) || !strings.Contains(r, `"applicantId"`) || byRow[5].Retried < 1 {
		t.Errorf("the flaky record's task: retried %d, result %s; want retried at least once, then succeeded", byRow[5].Retried, r)
	}
	if r := byRow[7].Result; !strings.Contains(r, `"errorCode":"SUMSUB_INVALID_SHARE_TOKEN"`) {
		t.Errorf("the refused record's task: result %s; want its error code", r)
	}
	if q := d.queue(imports.Queue); q.Archived != 0 {
		t.Errorf("%d archived record tasks, want none (a refused token is the record's outcome)", q.Archived)
	}

	// Pause: the simulator gets no request from a second on; a pending task
	// deleted meanwhile is fed again by the reconciler; resume restarts.
	batch2 := e.UploadBatch(t, key, apitest.CSVFile("dash2", e.Entities(t, key, 40)))
	waitProcessed(t, e, key, batch2, 5, 30*time.Second)
	// The backlog in metrics: the records still in the schedule, by business.
	m := e.Scrape(t)
	if m["kycbatch_records_waiting"] < 1 || m[`kycbatch_records_waiting_by_business{business="`+business.String()+`"}`] != m["kycbatch_records_waiting"] {
		t.Errorf("backlog metrics during a 40-record batch: waiting %v, the business's %v", m["kycbatch_records_waiting"],
			m[`kycbatch_records_waiting_by_business{business="`+business.String()+`"}`])
	}
	d.call(http.MethodPost, "/queues/"+imports.Queue+":pause", nil)
	time.Sleep(time.Second)
	atPause, first := e.Sim.Stats().Requests, estimate(t, e, key, batch2)
	time.Sleep(2 * time.Second)
	if n := e.Sim.Stats().Requests - atPause; n != 0 {
		t.Errorf("%d Sumsub requests from 1 s to 3 s after the pause, want none", n)
	}
	if second := estimate(t, e, key, batch2); !second.After(first) {
		t.Errorf("estimatedCompletionAt %s, then %s: want it moving out while the queue is paused", first, second)
	}
	rec := httptest.NewRecorder()
	e.App.OpsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if !strings.Contains(rec.Body.String(), `"queue":"paused"`) {
		t.Errorf("/readyz while paused: %s", rec.Body)
	}
	pending := d.tasks(imports.Queue, "pending")
	if len(pending) == 0 {
		t.Fatal("no pending record task while paused")
	}
	d.call(http.MethodDelete, "/queues/"+imports.Queue+"/pending_tasks/"+pending[0].ID, nil)
	// The reconciler looks for a task unseen for a minute: this one's is made older.
	if _, err := e.Pool.Exec(context.Background(), `UPDATE batch_records SET queued_at = now() - interval '2 minutes' WHERE queued_at IS NOT NULL`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.App.Queue.Enqueue(worker.NewReconcileTask()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); e.Scrape(t)[`kycbatch_reconciler_repairs_total{kind="task_refed"}`] < 1; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the reconciler did not feed the deleted task's record again")
		}
	}
	resumed := time.Now()
	d.call(http.MethodPost, "/queues/"+imports.Queue+":resume", nil)
	for before := e.Sim.Stats().Requests; e.Sim.Stats().Requests-before < 10; time.Sleep(20 * time.Millisecond) {
		if time.Since(resumed) > 10*time.Second {
			t.Fatal("no Sumsub request within 10 s of resuming")
		}
	}
	t.Logf("10 requests %s after resuming", time.Since(resumed).Round(10*time.Millisecond))
	final := e.WaitBatch(t, key, batch2, 60*time.Second)
	if final["status"] != "completed" || final["processedRecords"] != 40.0 || final["failedRecords"] != 0.0 {
		t.Errorf("after the pause: %v", final)
	}
	checkNoTokenLostOrDoubled(t, e, batch2, "dash2")
}
