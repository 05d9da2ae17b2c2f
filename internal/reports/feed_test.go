package reports_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/kycbatch/kycbatch/internal/reports"
	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// missingBatch uploads a batch of n records of entities that do not exist:
// they fail at upload, so the batch is final at once and costs no Sumsub
// call, and its report lists them all the same.
func missingBatch(tb testing.TB, e *apitest.Env, key string, n int) string {
	tb.Helper()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.New()
	}
	return e.UploadBatch(tb, key, apitest.CSVFile("", ids))
}

// builds counts the "report built" lines the environment logged, by report.
func builds(tb testing.TB, e *apitest.Env) map[string]int {
	tb.Helper()
	n := map[string]int{}
	lines := bufio.NewScanner(strings.NewReader(e.Logs.String()))
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		var l struct {
			Msg      string `json:"msg"`
			ReportID string `json:"report_id"`
		}
		if json.Unmarshal(lines.Bytes(), &l) == nil && l.Msg == "report built" {
			n[l.ReportID]++
		}
	}
	if err := lines.Err(); err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestTaskBuildsItsReport: each build task's payload, and its Result in the
// dashboard, name the report it built, with that report's batch and record
// count. Business A's three reports fill the window at their initiates and
// B's waits for a build's end: the old turn-taking tasks built B's report
// under one of A's tasks.
func TestTaskBuildsItsReport(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	a, _ := e.Business(t)
	b, _ := e.Business(t)
	type report struct {
		key, batch, id string
		records        int
	}
	var all []report
	for i, key := range []string{a, a, a, b} {
		r := report{key: key, batch: missingBatch(t, e, key, i+1), records: i + 1}
		_, r.id, _ = initiate(t, e, key, r.batch)
		all = append(all, r)
	}
	e.StartWorker(t, 5*time.Second)
	for _, r := range all {
		if data := waitReport(t, e, r.key, r.id); data["status"] != "success" {
			t.Fatalf("report %s: %v", r.id, data)
		}
	}
	for _, r := range all {
		info, err := e.Inspector.GetTaskInfo(reports.QueueReports, "report:"+r.id)
		if err != nil {
			t.Fatalf("task of report %s: %v", r.id, err)
		}
		var payload reports.BuildReportPayload
		if err := json.Unmarshal(info.Payload, &payload); err != nil {
			t.Fatal(err)
		}
		var result map[string]any
		if err := json.Unmarshal(info.Result, &result); err != nil {
			t.Fatalf("result of report %s's task %q: %v", r.id, info.Result, err)
		}
		want := map[string]any{"reportId": r.id, "batchId": r.batch, "records": float64(r.records)}
		if info.State != asynq.TaskStateCompleted || payload.ReportID != r.id || !cmp.Equal(want, result) {
			t.Errorf("task of report %s: %s, payload %s, result (-want +got):\n%s", r.id, info.State, info.Payload, cmp.Diff(want, result))
		}
	}
}

// TestFairTurnsAtEnqueue: business A initiates its ten reports, then B one.
// B's report does not wait behind A's backlog: it is the first queued after
// its initiate (at the latest, within the first window of turns), since A
// has had the turns before.
func TestFairTurnsAtEnqueue(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	a, _ := e.Business(t)
	b, _ := e.Business(t)
	for range 10 {
		initiate(t, e, a, missingBatch(t, e, a, 1))
	}
	_, quiet, _ := initiate(t, e, b, missingBatch(t, e, b, 1))
	e.StartWorker(t, 5*time.Second)
	waitReport(t, e, b, quiet)

	// The reports queued after B's initiate, in the order of their turns.
	rows, err := e.Pool.Query(t.Context(), `
		SELECT id FROM reports
		WHERE queued_at > (SELECT created_at FROM reports WHERE id = $1)
		ORDER BY queued_at`, quiet)
	if err != nil {
		t.Fatal(err)
	}
	var turns []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		turns = append(turns, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for i, id := range turns {
		if id == quiet {
			if i >= reports.Window {
				t.Errorf("B's report queued after %d of A's (%v), want fewer than the window (%d)", i, turns, reports.Window)
			}
			return
		}
	}
	t.Errorf("B's report %s never queued after its initiate: %v", quiet, turns)
}

// TestWindowDuringFlood: while three businesses initiate ten reports each
// and a worker builds them, the reports queue holds tasks of at most window
// unfinished reports, and none of a report still waiting for its turn;
// every report is built, once. A task whose build has just ended (its
// report final) may still show as active for the moment until its handler
// returns: it is not counted.
func TestWindowDuringFlood(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	e.StartWorker(t, 5*time.Second)
	const businesses, each = 3, 10
	type business struct {
		key     string
		batches []string
	}
	var flood []business
	for range businesses {
		key, _ := e.Business(t)
		f := business{key: key}
		for range each {
			f.batches = append(f.batches, missingBatch(t, e, key, 20))
		}
		flood = append(flood, f)
	}

	ctx := t.Context()
	done := make(chan struct{})
	sampled := make(chan int)
	go func() {
		samples, most := 0, 0
		defer func() {
			t.Logf("%d samples; at most %d unfinished reports with a task", samples, most)
			sampled <- samples
		}()
		for {
			select {
			case <-done:
				return
			default:
			}
			var withTask []string
			lists := []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
				e.Inspector.ListPendingTasks, e.Inspector.ListActiveTasks, e.Inspector.ListRetryTasks,
			}
			for _, list := range lists {
				tasks, err := list(reports.QueueReports)
				if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
					t.Errorf("list tasks: %v", err)
					return
				}
				for _, ti := range tasks {
					withTask = append(withTask, strings.TrimPrefix(ti.ID, "report:"))
				}
			}
			// A task that moved from one list to the next while they were
			// read is counted once.
			slices.Sort(withTask)
			withTask = slices.Compact(withTask)
			// One snapshot of PostgreSQL, read after the lists: a task
			// listed then whose report is final now is not counted.
			var inWindow, unfinished, waiting int
			err := e.Pool.QueryRow(ctx, `
				SELECT count(*) FILTER (WHERE status IN ('queued', 'processing')),
				       count(*) FILTER (WHERE id = ANY($1) AND status IN ('pending', 'queued', 'processing')),
				       count(*) FILTER (WHERE id = ANY($1) AND status = 'pending')
				FROM reports`, withTask).Scan(&inWindow, &unfinished, &waiting)
			if err != nil {
				t.Errorf("count reports: %v", err)
				return
			}
			if inWindow > reports.Window || unfinished > reports.Window || waiting > 0 {
				t.Errorf("%d reports queued or processing, tasks of %d unfinished reports, %d of them pending; want at most %d, %d, none",
					inWindow, unfinished, waiting, reports.Window, reports.Window)
			}
			samples++
			most = max(most, unfinished)
			time.Sleep(5 * time.Millisecond) // leave the machine to the worker
		}
	}()

	var wg sync.WaitGroup
	ids := make([][]string, businesses)
	for i, f := range flood {
		wg.Go(func() {
			for _, batch := range f.batches {
				_, id, r := initiate(t, e, f.key, batch)
				if id == "" {
					t.Errorf("initiate: %d %s", r.Status, r.Body)
					return
				}
				ids[i] = append(ids[i], id)
			}
		})
	}
	wg.Wait()
	for i, f := range flood {
		for _, id := range ids[i] {
			if data := waitReport(t, e, f.key, id); data["status"] != "success" {
				t.Errorf("report %s: %v", id, data)
			}
		}
	}
	close(done)
	if n := <-sampled; n == 0 {
		t.Error("the queue was never sampled")
	}
	want := map[string]int{}
	for _, batch := range ids {
		for _, id := range batch {
			want[id] = 1
		}
	}
	if diff := cmp.Diff(want, builds(t, e)); diff != "" {
		t.Errorf("builds by report (-want +got):\n%s", diff)
	}
}

// TestReconcileRequeuesDeletedTask: a queued report whose task was deleted
// from the dashboard is enqueued again by the reconciler (once, however
// often it runs) and built; no report is built twice.
func TestReconcileRequeuesDeletedTask(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, _ := e.Business(t)
	var ids []string
	for range 2 {
		_, id, _ := initiate(t, e, key, missingBatch(t, e, key, 3))
		ids = append(ids, id)
	}
	lost := ids[0]
	if err := e.Inspector.DeleteTask(reports.QueueReports, "report:"+lost); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// The report has waited longer than the reconciler lets one wait.
	if _, err := e.Pool.Exec(ctx, `UPDATE reports SET updated_at = now() - interval '5 minutes' WHERE id = $1`, lost); err != nil {
		t.Fatal(err)
	}
	b := reports.NewBuilder(reports.BuilderConfig{Pool: e.Pool, Files: e.Files, Queue: e.App.Queue, Inspector: e.Inspector, Outbox: e.App.Outbox, Logger: slog.New(slog.DiscardHandler)})
	for range 2 {
		if err := b.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pending, err := e.Inspector.ListPendingTasks(reports.QueueReports)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ti := range pending {
		got = append(got, ti.ID)
	}
	slices.Sort(got)
	want := []string{"report:" + ids[0], "report:" + ids[1]}
	slices.Sort(want)
	if !cmp.Equal(want, got) {
		t.Errorf("pending tasks after the reconciler (-want +got):\n%s", cmp.Diff(want, got))
	}

	e.StartWorker(t, 5*time.Second)
	for _, id := range ids {
		if data := waitReport(t, e, key, id); data["status"] != "success" {
			t.Errorf("report %s: %v", id, data)
		}
	}
	if diff := cmp.Diff(map[string]int{ids[0]: 1, ids[1]: 1}, builds(t, e)); diff != "" {
		t.Errorf("builds by report (-want +got):\n%s", diff)
	}
}
