package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// recordState is a record's outcome as stored.
type recordState struct {
	Status, ErrorCode string
	Attempts          int
	HasApplicant      bool
}

// records returns the outcome of every record of a batch, by row.
func records(t *testing.T, e *apitest.Env, batchID string) map[int]recordState {
	t.Helper()
	rows, err := e.Pool.Query(context.Background(), `
		SELECT row_number, status, coalesce(error_code, ''), attempts, applicant_id IS NOT NULL
		FROM batch_records WHERE batch_id = $1`, batchID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := make(map[int]recordState)
	for rows.Next() {
		var row int
		var s recordState
		if err := rows.Scan(&row, &s.Status, &s.ErrorCode, &s.Attempts, &s.HasApplicant); err != nil {
			t.Fatal(err)
		}
		got[row] = s
	}
	return got
}

// checkCounters checks that the batch's counters equal its records' states
// and that no share token is left stored for a final record.
func checkCounters(t *testing.T, e *apitest.Env, batchID string) {
	t.Helper()
	var mismatch, tokensLeft int
	err := e.Pool.QueryRow(context.Background(), `
		SELECT
			(SELECT count(*) FROM batch_progress b WHERE b.id = $1 AND (
				b.succeeded_records <> (SELECT count(*) FROM batch_records WHERE batch_id = $1 AND status = 'succeeded') OR
				b.failed_records <> (SELECT count(*) FROM batch_records WHERE batch_id = $1 AND status = 'failed') OR
				b.cancelled_records <> (SELECT count(*) FROM batch_records WHERE batch_id = $1 AND status = 'cancelled'))),
			(SELECT count(*) FROM batch_records WHERE batch_id = $1 AND status <> 'pending' AND share_token IS NOT NULL)`,
		batchID).Scan(&mismatch, &tokensLeft)
	if err != nil {
		t.Fatal(err)
	}
	if mismatch != 0 {
		t.Errorf("batch %s: counters differ from the records' states", batchID)
	}
	if tokensLeft != 0 {
		t.Errorf("batch %s: %d final records still hold their share token", batchID, tokensLeft)
	}
}

// Every test-mode token ends as Sumsub's answer says, and a report of the
// batch is built: with two workers, straight to PostgreSQL and through
// PgBouncer in transaction pooling mode (no prepared statement, no session
// state kept between transactions).
func TestEveryTestModeToken(t *testing.T) {
	t.Parallel()
	for _, pgbouncer := range []bool{false, true} {
		t.Run(map[bool]string{false: "direct", true: "PgBouncer"}[pgbouncer], func(t *testing.T) {
			t.Parallel()
			everyTestModeToken(t, apitest.Options{PgBouncer: pgbouncer})
		})
	}
}

func everyTestModeToken(t *testing.T, opts apitest.Options) {
	e := apitest.New(t, opts)
	key, business := e.Business(t)
	ids := e.Entities(t, key, 11)
	holder := e.Entities(t, key, 1)[0]
	missing := uuid.New()
	rows := []struct {
		ext                uuid.UUID
		token, level, card string
	}{
		{ids[0], "green-token", "", "card-new"},
		{ids[1], "sim-red-token", "", ""},
		{ids[2], "sim-pending-token", "levelKyc", ""},
		{ids[3], "sim-invalid-token", "", ""},
		{ids[4], "sim-expired-token", "", ""},
		{ids[5], "sim-level-token", "", ""},
		{ids[6], "sim-flaky-token", "", ""},
		{ids[7], "sim-slow-token", "", ""},
		{missing, "no-entity-token", "", ""},
		{ids[8], "unknown-level-token", "no-such-level", ""},
		{ids[9], "dup-card-token", "", "card-held"},
	}
	var csv strings.Builder
	csv.WriteString("externalId,shareToken,applicantLevel,cardProcessorPublicToken\n")
	for _, r := range rows {
		fmt.Fprintf(&csv, "%s,%s,%s,%s\n", r.ext, r.token, r.level, r.card)
	}
	batchID := e.UploadBatch(t, key, []byte(csv.String()))
	// Another entity takes the card token after the upload accepted it.
	if _, err := e.Pool.Exec(context.Background(),
		`UPDATE entities SET card_processor_public_token = 'card-held' WHERE business_id = $1 AND external_id = $2`, business, holder); err != nil {
		t.Fatal(err)
	}
	e.StartWorker(t, 5*time.Second)
	e.StartWorker(t, 5*time.Second)
	final := e.WaitBatch(t, key, batchID, 30*time.Second)

	want := map[int]recordState{
		2:  {Status: "succeeded", Attempts: 1, HasApplicant: true},
		3:  {Status: "succeeded", Attempts: 1, HasApplicant: true},
		4:  {Status: "succeeded", Attempts: 1, HasApplicant: true},
		5:  {Status: "failed", ErrorCode: "SUMSUB_INVALID_SHARE_TOKEN", Attempts: 1},
		6:  {Status: "failed", ErrorCode: "SUMSUB_HTTP_401", Attempts: 1},
		7:  {Status: "failed", ErrorCode: "SUMSUB_NON_SUITABLE_SHARE_TOKEN", Attempts: 1},
		8:  {Status: "succeeded", Attempts: 3, HasApplicant: true},
		9:  {Status: "succeeded", Attempts: 1, HasApplicant: true},
		10: {Status: "failed", ErrorCode: "ENTITY_NOT_FOUND", Attempts: 0},
		11: {Status: "failed", ErrorCode: "SUMSUB_NON_SUITABLE_SHARE_TOKEN", Attempts: 1},
		12: {Status: "failed", ErrorCode: "DUPLICATE_CARD_PROCESSOR_TOKEN", Attempts: 1, HasApplicant: true},
	}
	if diff := cmp.Diff(want, records(t, e, batchID)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if final["status"] != "completed" || final["processedRecords"] != float64(11) || final["failedRecords"] != float64(6) {
		t.Errorf("batch: %v", final)
	}
	checkCounters(t, e, batchID)

	// The entities show the imports.
	wantKYC := map[uuid.UUID]string{
		ids[0]: "APPROVED", ids[1]: "REJECTED", ids[2]: "PENDING", ids[3]: "NOT_STARTED", ids[6]: "APPROVED",
		ids[9]: "APPROVED", holder: "NOT_STARTED",
	}
	for ext, kyc := range wantKYC {
		ent := e.Call(t, http.MethodGet, "/entity/"+ext.String(), key, nil).JSON(t)
		if ent["kycStatus"] != kyc {
			t.Errorf("entity %s: kycStatus %v, want %s", ext, ent["kycStatus"], kyc)
		}
		if (kyc == "NOT_STARTED") != (ent["sumsubApplicantId"] == nil) {
			t.Errorf("entity %s: sumsubApplicantId %v with kycStatus %s", ext, ent["sumsubApplicantId"], kyc)
		}
	}
	cards := map[uuid.UUID]any{ids[0]: "card-new", ids[9]: nil, holder: "card-held"}
	for ext, card := range cards {
		if got := e.Call(t, http.MethodGet, "/entity/"+ext.String(), key, nil).JSON(t)["cardProcessorPublicToken"]; got != card {
			t.Errorf("entity %s: cardProcessorPublicToken %v, want %v", ext, got, card)
		}
	}
	if logs := e.Logs.String(); strings.Contains(logs, "-token") {
		t.Errorf("a share token was logged")
	}
	r := e.Call(t, http.MethodPost, "/api/v1/stamper-v2/bulk-usage-report/initiate", key, map[string]string{"client_id": batchID})
	report := reportCSV(t, e, key, r.JSON(t)["data"].(map[string]any)["client_id"].(string))
	if lines := strings.Count(report, "\n"); lines != 12 {
		t.Errorf("report: %d lines, want a header and 11 records:\n%s", lines, report)
	}
}

// TestTwoWorkersShareTheLimit runs two worker processes on one batch: they
// share one limit. What holds on a machine however busy is checked: every
// record imported once, none failed because of a 429 (a 429 is not an
// attempt), and 429s rare, where two workers each keeping the limit alone
// would have half their requests refused. How close they come to the rate
// with no 429 at all is BenchmarkRateUse's to measure (cmd/worker, make bench).
func TestTwoWorkersShareTheLimit(t *testing.T) {
	// Not parallel: it measures rates and latencies, so it runs alone.
	const rate, n = 50, 300
	e := apitest.New(t, apitest.Options{SumsubRate: rate})
	e.StartWorker(t, 5*time.Second)
	e.StartWorker(t, 5*time.Second)
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("", e.Entities(t, key, n)))
	final := e.WaitBatch(t, key, batchID, 2*time.Minute)

	started, _ := time.Parse(time.RFC3339Nano, final["startedAt"].(string))
	completed, _ := time.Parse(time.RFC3339Nano, final["completedAt"].(string))
	stats := e.Sim.Stats()
	t.Logf("%d records in %s (ideal %s); simulator: %+v", n, completed.Sub(started), time.Duration(n/rate)*time.Second, stats)
	if final["status"] != "completed" || final["failedRecords"] != float64(0) {
		t.Errorf("batch: %v", final)
	}
	for row, rec := range records(t, e, batchID) {
		if rec.Status != "succeeded" || rec.Attempts != 1 {
			t.Errorf("row %d: %+v, want succeeded at the first attempt", row, rec)
		}
	}
	if stats.SuccessfulImports != n || stats.Rejected429 > n/20 {
		t.Errorf("simulator imported %d tokens and refused %d requests with 429; want %d and at most %d", stats.SuccessfulImports, stats.Rejected429, n, n/20)
	}
	checkCounters(t, e, batchID)
}

// TestSmallBatchIsNotStuckBehindALargeOne: a 10-row batch overtakes a running
// 200-row batch (shortest remaining first), and the large one keeps going.
// It counts records rather than seconds: while the small batch runs, the
// large one keeps a single record in flight, so the large batch finishes
// only the records it had queued and a few more, however slow the machine.
func TestSmallBatchIsNotStuckBehindALargeOne(t *testing.T) {
	// Not parallel: the rate is shared between the batches, so it runs alone.
	e := apitest.New(t, apitest.Options{SumsubRate: 10})
	e.StartWorker(t, time.Second)
	key, _ := e.Business(t)
	large := e.UploadBatch(t, key, apitest.CSVFile("large", e.Entities(t, key, 200)))
	smallIDs := e.Entities(t, key, 10)
	processed := func() int {
		return int(e.Call(t, http.MethodGet, "/entity/kyc/import/batch/"+large, key, nil).JSON(t)["processedRecords"].(float64))
	}
	waitFor(t, 30*time.Second, "the large batch to be running", func() bool { return processed() >= 3 })
	before := processed()
	small := e.UploadBatch(t, key, apitest.CSVFile("small", smallIDs))
	final := e.WaitBatch(t, key, small, time.Minute)
	during := processed() - before
	// The large batch's window at 10/s is 5 records, queued before the small
	// batch came; after them it gets one record at a time beside the small
	// batch's five.
	t.Logf("the large batch finished %d records while the 10-record batch ran", during)
	if final["status"] != "completed" || during > 15 {
		t.Errorf("small batch %v; the large batch finished %d records meanwhile, want at most 15", final["status"], during)
	}
	// Shortest remaining first, but the large batch never stops.
	after := processed()
	waitFor(t, 30*time.Second, "the large batch to go on", func() bool { return processed() > after })
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", timeout, what)
		}
	}
}
