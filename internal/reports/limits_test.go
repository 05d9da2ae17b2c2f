package reports_test

import (
	"log/slog"
	"net/http"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kycbatch/kycbatch/internal/reports"
	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// initiate starts a report of batchID and returns the answer's status, its
// client_id (when 200) and the answer.
func initiate(t testing.TB, e *apitest.Env, key, batchID string) (int, string, apitest.Response) {
	t.Helper()
	r := e.Call(t, http.MethodPost, reportPath+"initiate", key, map[string]string{"client_id": batchID})
	if r.Status != http.StatusOK {
		return r.Status, "", r
	}
	return r.Status, r.JSON(t)["data"].(map[string]any)["client_id"].(string), r
}

// TestReportFlood: initiates for a batch with a report in progress answer
// that report, even many at once; a business has at most 10 reports in
// progress (429, Retry-After 5, nothing stored); builds take turns between
// businesses, given as their tasks are enqueued.
func TestReportFlood(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{}) // no worker: reports stay pending
	flood, _ := e.Business(t)
	quiet, _ := e.Business(t)
	batches := make([]string, 11)
	for i := range batches {
		batches[i] = e.UploadBatch(t, flood, apitest.CSVFile("", e.Entities(t, flood, 1)))
	}

	_, first, _ := initiate(t, e, flood, batches[0])
	if _, again, _ := initiate(t, e, flood, batches[0]); again != first {
		t.Errorf("second initiate of a batch in progress: %q, want its report %q", again, first)
	}
	ids := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, id, _ := initiate(t, e, flood, batches[1])
			mu.Lock()
			defer mu.Unlock()
			ids[id] = true
		})
	}
	wg.Wait()
	if len(ids) != 1 || ids[""] {
		t.Errorf("20 initiates at once for one batch made reports %v, want one", ids)
	}
	for i, b := range batches[2:10] {
		if status, _, r := initiate(t, e, flood, b); status != http.StatusOK {
			t.Fatalf("report %d of 10: %d %s", i+3, status, r.Body)
		}
	}
	status, _, r := initiate(t, e, flood, batches[10])
	want := `{"data":null,"status_code":429,"success":false,"message":"Too many reports in progress, retry later","message_code":"rate_limited"}`
	if status != http.StatusTooManyRequests || string(r.Body) != want || r.Header.Get("Retry-After") != "5" {
		t.Errorf("the 11th report in progress: %d %s Retry-After %q, want 429 %s, 5", status, r.Body, r.Header.Get("Retry-After"), want)
	}
	var stored int
	if err := e.Pool.QueryRow(t.Context(), `SELECT count(*) FROM reports WHERE batch_id = $1`, batches[10]).Scan(&stored); err != nil || stored != 0 {
		t.Errorf("refused report stored: %d %v", stored, err)
	}

	// Turns are given as tasks are enqueued: the flood's first reports were
	// queued at once (the window was free), the rest wait pending. As each
	// build ends (here by hand: no worker runs), a feed queues the next: the
	// quiet business's report, initiated last, goes first, since the flood's
	// business has just had its turns.
	quietBatch := e.UploadBatch(t, quiet, apitest.CSVFile("", e.Entities(t, quiet, 1)))
	_, quietReport, _ := initiate(t, e, quiet, quietBatch)
	ctx := t.Context()
	queued := queuedReports(t, e)
	if len(queued) != reports.Window || queued[0] != first {
		t.Fatalf("queued at initiate %v: want the window (%d) of the flood's first reports, %s first", queued, reports.Window, first)
	}
	b := reports.NewBuilder(reports.BuilderConfig{Pool: e.Pool, Files: e.Files, Queue: e.App.Queue, Inspector: e.Inspector, Outbox: e.App.Outbox, Logger: slog.New(slog.DiscardHandler)})
	if _, err := e.Pool.Exec(ctx, `UPDATE reports SET status = 'success' WHERE id = $1`, queued[0]); err != nil {
		t.Fatal(err)
	}
	if err := b.Feed(ctx); err != nil {
		t.Fatal(err)
	}
	if next := queuedReports(t, e); len(next) != reports.Window || next[len(next)-1] != quietReport {
		t.Errorf("queued after a build's end %v: want the quiet business's %s last in", next, quietReport)
	}
}

// queuedReports returns the reports queued, in the order of their turns.
func queuedReports(tb testing.TB, e *apitest.Env) []string {
	tb.Helper()
	rows, err := e.Pool.Query(tb.Context(), `SELECT id FROM reports WHERE status = 'queued' ORDER BY queued_at`)
	if err != nil {
		tb.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	return ids
}
