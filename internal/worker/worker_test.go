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

func TestEveryTestModeToken(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
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
}

// TestTwoWorkersShareTheLimit runs two worker processes on one batch: together
// they use the whole rate limit and never exceed it.
func TestTwoWorkersShareTheLimit(t *testing.T) {
	// Not parallel: it measures rates and latencies, so it runs alone.
	const rate, n = 50, 300
	e := apitest.New(t, apitest.Options{SumsubRate: rate})
	e.StartWorker(t, 5*time.Second)
	e.StartWorker(t, 5*time.Second)
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("", e.Entities(t, key, n)))
	final := e.WaitBatch(t, key, batchID, 30*time.Second)

	started, _ := time.Parse(time.RFC3339Nano, final["startedAt"].(string))
	completed, _ := time.Parse(time.RFC3339Nano, final["completedAt"].(string))
	took := completed.Sub(started)
	stats := e.Sim.Stats()
	t.Logf("%d records in %s (ideal %s); simulator: %+v", n, took, time.Duration(n/rate)*time.Second, stats)
	if final["status"] != "completed" || final["failedRecords"] != float64(0) {
		t.Errorf("batch: %v", final)
	}
	if stats.MaxRequestsInAnySecond > rate || stats.Rejected429 != 0 {
		t.Errorf("simulator saw %d requests in one second and sent %d 429s; want at most %d and none", stats.MaxRequestsInAnySecond, stats.Rejected429, rate)
	}
	if ideal := time.Duration(n/rate) * time.Second; took > ideal*11/10 {
		t.Errorf("took %s, want within 10%% of %s", took, ideal)
	}
	checkCounters(t, e, batchID)
}

// TestSmallBatchIsNotStuckBehindALargeOne: a 10-row batch overtakes a running
// 200-row batch (shortest remaining first), and the large one keeps going.
func TestSmallBatchIsNotStuckBehindALargeOne(t *testing.T) {
	// Not parallel: it measures rates and latencies, so it runs alone.
	// At Sumsub's 10/s, even a fair half of the rate finishes 10 records in 2 s.
	e := apitest.New(t, apitest.Options{SumsubRate: 10})
	e.StartWorker(t, time.Second)
	key, _ := e.Business(t)
	large := e.UploadBatch(t, key, apitest.CSVFile("large", e.Entities(t, key, 200)))
	smallIDs := e.Entities(t, key, 10)
	time.Sleep(time.Second) // the large batch is running
	largeBefore := e.Call(t, http.MethodGet, "/entity/kyc/import/batch/"+large, key, nil).JSON(t)["processedRecords"].(float64)
	start := time.Now()
	small := e.UploadBatch(t, key, apitest.CSVFile("small", smallIDs))
	final := e.WaitBatch(t, key, small, 10*time.Second)
	took := time.Since(start)
	t.Logf("10-record batch finished %s after its upload", took)
	if final["status"] != "completed" || took > 2*time.Second {
		t.Errorf("small batch %v after %s, want completed within 2 s", final["status"], took)
	}
	st := e.Call(t, http.MethodGet, "/entity/kyc/import/batch/"+large, key, nil).JSON(t)
	if st["status"] != "in_progress" {
		t.Errorf("large batch is %v, want still in progress", st["status"])
	}
	// Shortest remaining first, but the large batch never stops.
	if st["processedRecords"].(float64) <= largeBefore {
		t.Errorf("large batch processed %v records before, %v after: it stopped", largeBefore, st["processedRecords"])
	}
}
