package worker_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// checkNoTokenLostOrDoubled checks, against what the simulator saw, that no
// token was imported twice, that every succeeded record was imported once,
// and that SUMSUB_OUTCOME_UNKNOWN marks exactly the records whose token an
// earlier, unanswered attempt had really used.
func checkNoTokenLostOrDoubled(t *testing.T, e *apitest.Env, batchID, prefix string) (unknown int) {
	t.Helper()
	for row, rec := range records(t, e, batchID) {
		token := apitest.Token(prefix, row)
		imports, seen := e.Sim.Imports(token), e.Sim.Seen(token)
		switch {
		case imports > 1:
			t.Errorf("row %d: token imported %d times", row, imports)
		case rec.Status == "pending":
			t.Errorf("row %d: still pending", row)
		case rec.Status == "succeeded" && imports != 1:
			t.Errorf("row %d: succeeded, but the simulator imported its token %d times", row, imports)
		case rec.ErrorCode == "SUMSUB_OUTCOME_UNKNOWN":
			unknown++
			if imports != 1 || seen < 2 {
				t.Errorf("row %d: outcome unknown, but the simulator imported its token %d times in %d requests", row, imports, seen)
			}
		case rec.Status == "failed":
			t.Errorf("row %d: failed with %s", row, rec.ErrorCode)
		}
	}
	return unknown
}

// TestWorkerCrashMidBatch stops a worker without letting its calls finish,
// then starts another: the batch completes and nothing is imported twice.
// The cut calls come back once their lease is over, found by the reconciler.
func TestWorkerCrashMidBatch(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{SumsubRate: 50, SimLatency: 150 * time.Millisecond, ReconcileInterval: time.Second})
	crash := e.StartWorker(t, time.Millisecond)
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("crash", e.Entities(t, key, 150)))
	time.Sleep(1500 * time.Millisecond)
	crash()
	e.StartWorker(t, 5*time.Second)
	final := e.WaitBatch(t, key, batchID, 60*time.Second)
	if final["status"] != "completed" {
		t.Fatalf("batch %v", final)
	}
	unknown := checkNoTokenLostOrDoubled(t, e, batchID, "crash")
	t.Logf("after the crash: %d records with an unknown outcome; simulator %+v", unknown, e.Sim.Stats())
	checkCounters(t, e, batchID)
}

// TestRedisFlushedMidBatch loses every queued task; the reconciler finds the
// work in PostgreSQL and finishes the batch.
func TestRedisFlushedMidBatch(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{SumsubRate: 50, ReconcileInterval: time.Second})
	e.StartWorker(t, 5*time.Second)
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("flush", e.Entities(t, key, 150)))
	time.Sleep(time.Second)
	if err := e.Redis.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(e.Logs.String())
			for _, q := range []string{"maintenance", "events"} {
				qi, err := e.Inspector.GetQueueInfo(q)
				t.Logf("%s: %+v %v", q, qi, err)
			}
		}
	})
	// A call the flush cut short (its task's lease lost with Redis) leaves its
	// record to wait out the attempt's lease (17 s) before it is tried again.
	final := e.WaitBatch(t, key, batchID, time.Minute)
	if final["status"] != "completed" {
		t.Fatalf("batch %v", final)
	}
	checkNoTokenLostOrDoubled(t, e, batchID, "flush")
	checkCounters(t, e, batchID)
	// The worker found the schedule gone and rebuilt it: ops see it.
	checkMetrics(t, e, nil, map[string]float64{`kycbatch_reconciler_repairs_total{kind="schedule_rebuilt"}`: 1})
}

// TestUploadWhileRedisLost: a batch stored while its task never reached
// Redis is started by the reconciler.
func TestBatchEnqueuedByReconciler(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{ReconcileInterval: time.Second})
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("late", e.Entities(t, key, 3)))
	if err := e.Redis.FlushDB(context.Background()).Err(); err != nil { // the dispatch task is lost
		t.Fatal(err)
	}
	e.StartWorker(t, 5*time.Second)
	if final := e.WaitBatch(t, key, batchID, 20*time.Second); final["status"] != "completed" {
		t.Fatalf("batch %v", final)
	}
}

func TestCancelBatch(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{SumsubRate: 5})
	e.StartWorker(t, 5*time.Second)
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("cancel", e.Entities(t, key, 40)))
	waitFor(t, 30*time.Second, "a record to be imported", func() bool { return e.Sim.Stats().SuccessfulImports > 0 })

	r := e.Call(t, http.MethodPost, "/entity/kyc/import/batch/"+batchID+"/cancel", key, nil)
	if r.Status != http.StatusOK || r.JSON(t)["status"] != "cancelled" {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	// Records already sent finish; nothing else reaches Sumsub.
	count := func() (cancelled, done, pending int) {
		for _, rec := range records(t, e, batchID) {
			switch rec.Status {
			case "cancelled":
				cancelled++
			case "pending":
				pending++
			default:
				done++
			}
		}
		return cancelled, done, pending
	}
	waitFor(t, 30*time.Second, "the cancelled batch to settle", func() bool { _, _, pending := count(); return pending == 0 })
	seen := e.Sim.Stats().Requests
	time.Sleep(time.Second)
	if after := e.Sim.Stats().Requests; after != seen {
		t.Errorf("Sumsub got %d requests after the cancelled batch settled", after-seen)
	}
	if cancelled, done, _ := count(); cancelled == 0 || done == 0 {
		t.Errorf("%d cancelled, %d done; want some of each", cancelled, done)
	}
	checkCounters(t, e, batchID)

	again := e.Call(t, http.MethodPost, "/entity/kyc/import/batch/"+batchID+"/cancel", key, nil)
	if again.Status != http.StatusOK {
		t.Errorf("cancelling twice: %d %s", again.Status, again.Body)
	}
	other, _ := e.Business(t)
	if r := e.Call(t, http.MethodPost, "/entity/kyc/import/batch/"+batchID+"/cancel", other, nil); r.Status != http.StatusNotFound {
		t.Errorf("another business cancels: %d %s", r.Status, r.Body)
	}
}

// TestClaimsWaitForASlot: while Sumsub is slow and every slot of a worker
// holds a call, the worker claims no more records: a claimed record waits
// for nothing but its permit, so the lease of its attempt (permit wait, call
// timeout and a margin) cannot run out before its call is answered, and no
// second call for its token can start. Counted, not timed: the records
// claimed and unanswered never outnumber the slots.
func TestClaimsWaitForASlot(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	e.Worker.Concurrency = 1
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("sim-slow-", e.Entities(t, key, 3)))
	e.StartWorker(t, 5*time.Second)

	most, polls := 0, 0
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); polls++ {
		var claimed, left int
		err := e.Pool.QueryRow(context.Background(), `
			SELECT count(*) FILTER (WHERE attempts > answered_attempts), count(*) FILTER (WHERE status = 'pending')
			FROM batch_records WHERE batch_id = $1 AND status = 'pending'`, batchID).Scan(&claimed, &left)
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, claimed)
		if left == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if most != 1 {
		t.Errorf("at most %d records claimed and unanswered at once (%d polls), want 1: the worker's one slot", most, polls)
	}
	final := e.WaitBatch(t, key, batchID, 30*time.Second)
	if final["status"] != "completed" || final["failedRecords"] != float64(0) {
		t.Errorf("batch: %v", final)
	}
}
