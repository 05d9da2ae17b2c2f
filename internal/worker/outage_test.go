package worker_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// waitOpen waits for the Sumsub circuit to open and returns how many
// requests the simulator's outage had taken by then.
func waitOpen(t *testing.T, e *apitest.Env) int {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st, err := e.App.Circuit.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Open {
			return e.Sim.Stats().OutageAnswers
		}
	}
	t.Fatal("the circuit did not open within 15 s")
	return 0
}

// TestSumsubOutage puts Sumsub down in the middle of a 30-record batch at
// 10/s, as an outage (503) and as a rotated secret (401): the circuit
// opens, nothing is sent but probes while it is open, and once Sumsub is
// back every record succeeds, none failed or imported twice.
func TestSumsubOutage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		outage sumsubsim.Outage
		length time.Duration
	}{{sumsubsim.Outage503, 20 * time.Second}, {sumsubsim.Outage401, 15 * time.Second}} {
		t.Run(string(tc.outage), func(t *testing.T) {
			t.Parallel()
			const probeInterval = 4 * time.Second
			e := apitest.New(t, apitest.Options{SumsubRate: 10, SumsubProbeInterval: probeInterval})
			e.StartWorker(t, 5*time.Second)
			key, _ := e.Business(t)
			batchID := e.UploadBatch(t, key, apitest.CSVFile("outage"+string(tc.outage), e.Entities(t, key, 30)))
			waitProcessed(t, e, key, batchID, 5, 30*time.Second)
			ends := time.Now().Add(tc.length)
			e.Sim.SetFaults(sumsubsim.Faults{Outage: tc.outage, OutageEnds: ends})
			atOpen := waitOpen(t, e)

			// Open: ready all the same, and /readyz says why; the estimate keeps moving out.
			rec := httptest.NewRecorder()
			e.App.OpsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			var ready struct {
				Status string
				Sumsub struct{ Circuit, Reason string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &ready); err != nil || rec.Code != http.StatusOK || ready.Sumsub.Circuit != "open" || ready.Sumsub.Reason == "" {
				t.Errorf("/readyz while open: %d %s", rec.Code, rec.Body)
			}
			first := estimate(t, e, key, batchID)
			time.Sleep(1500 * time.Millisecond)
			if second := estimate(t, e, key, batchID); !second.After(first) || !first.After(time.Now().Add(-time.Second)) {
				t.Errorf("estimatedCompletionAt %s, then %s: want it moving out while the circuit is open", first, second)
			}

			final := e.WaitBatch(t, key, batchID, tc.length+60*time.Second)
			if final["status"] != "completed" || final["failedRecords"] != 0.0 {
				t.Fatalf("batch %v", final)
			}
			probes := e.Sim.Stats().OutageAnswers - atOpen
			t.Logf("%s outage of %s: %d requests taken before the circuit opened, %d after (probes and calls in flight); completed %s after it ended",
				tc.outage, tc.length, atOpen, probes, time.Since(ends).Round(100*time.Millisecond))
			// Probes 1, 2, 4, 4… s apart over the outage, and a call or two in flight.
			if most := int(tc.length/probeInterval) + 4; probes > most {
				t.Errorf("the outage took %d requests after the circuit opened, want at most %d", probes, most)
			}
			checkNoTokenLostOrDoubled(t, e, batchID, "outage"+string(tc.outage))
			checkCounters(t, e, batchID)
			m := e.App.Metrics.SumsubCircuitTransitions
			if opened, closed := testutil.ToFloat64(m.WithLabelValues("open")), testutil.ToFloat64(m.WithLabelValues("closed")); opened != 1 || closed != 1 {
				t.Errorf("transitions: %v opened, %v closed, want 1 each", opened, closed)
			}
			logs := e.Logs.String()
			if n := strings.Count(logs, "Sumsub circuit opened"); n != 1 || strings.Count(logs, "Sumsub circuit closed") != 1 {
				t.Errorf("opened logged %d times, closed %d times, want once each", n, strings.Count(logs, "Sumsub circuit closed"))
			}
		})
	}
}

// estimate reads a batch's estimatedCompletionAt.
func estimate(t *testing.T, e *apitest.Env, key, batchID string) time.Time {
	t.Helper()
	b := e.Call(t, http.MethodGet, "/entity/kyc/import/batch/"+batchID, key, nil).JSON(t)
	s, _ := b["estimatedCompletionAt"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("estimatedCompletionAt %v: %v", b["estimatedCompletionAt"], err)
	}
	return at
}

// TestWrongSecret starts a worker whose Sumsub secret is wrong: nothing
// fails, every record waits; a worker with the right secret then sends
// them all once a probe passes.
func TestWrongSecret(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{SumsubRate: 10, SumsubProbeInterval: 2 * time.Second, SumsubSecretKey: "rotated-away"})
	stop := e.StartWorker(t, 5*time.Second)
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("secret", e.Entities(t, key, 10)))
	waitOpen(t, e)
	time.Sleep(5 * time.Second) // probes fail meanwhile
	for row, rec := range records(t, e, batchID) {
		if rec.Status != "pending" || rec.Attempts != 0 {
			t.Errorf("row %d with the wrong secret: %s after %d attempts, want pending after none", row, rec.Status, rec.Attempts)
		}
	}
	if st := e.Sim.Stats(); st.SuccessfulImports != 0 || st.Requests > 10 {
		t.Errorf("simulator %+v: want a few refused requests", st)
	}
	if !strings.Contains(e.Logs.String(), "401 Request signature mismatch") {
		t.Error("the circuit's reason, the signature refusal, is not logged")
	}
	stop()

	e.Worker.Sumsub.SecretKey = apitest.SimSecretKey
	e.StartWorker(t, 5*time.Second)
	final := e.WaitBatch(t, key, batchID, 30*time.Second)
	if final["status"] != "completed" || final["failedRecords"] != 0.0 {
		t.Fatalf("batch %v", final)
	}
	checkNoTokenLostOrDoubled(t, e, batchID, "secret")
}

// TestCircuitShared runs two workers through one outage: one of them opens
// the circuit, and the probes come from one at a time.
func TestCircuitShared(t *testing.T) {
	t.Parallel()
	const outage, probeInterval = 10 * time.Second, 2 * time.Second
	e := apitest.New(t, apitest.Options{SumsubRate: 10, SumsubProbeInterval: probeInterval})
	e.StartWorker(t, 5*time.Second)
	e.StartWorker(t, 5*time.Second)
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("shared", e.Entities(t, key, 40)))
	waitProcessed(t, e, key, batchID, 5, 30*time.Second)
	ends := time.Now().Add(outage)
	e.Sim.SetFaults(sumsubsim.Faults{Outage: sumsubsim.Outage503, OutageEnds: ends})
	waitOpen(t, e)
	// The other worker sees the circuit open within a second (its view of a
	// closed circuit is that fresh); from then to the outage's end, only
	// probes reach Sumsub, 2 s apart: one worker's worth, not two.
	const known = 1500 * time.Millisecond
	time.Sleep(known)
	from := e.Sim.Stats().OutageAnswers
	time.Sleep(time.Until(ends))
	probes := e.Sim.Stats().OutageAnswers - from
	if most := int((outage-known)/probeInterval) + 2; probes > most {
		t.Errorf("%d requests in the outage's last %s, want at most %d (probes of one worker at a time)", probes, outage-known, most)
	}
	final := e.WaitBatch(t, key, batchID, 30*time.Second)
	if final["status"] != "completed" || final["failedRecords"] != 0.0 {
		t.Fatalf("batch %v", final)
	}
	m := e.App.Metrics.SumsubCircuitTransitions
	if opened := testutil.ToFloat64(m.WithLabelValues("open")); opened != 1 {
		t.Errorf("the two workers opened the circuit %v times, want once", opened)
	}
	checkNoTokenLostOrDoubled(t, e, batchID, "shared")
}

// TestClockOff runs a worker whose clock is 2 minutes behind Sumsub's: the
// circuit opens, no record fails, and the log says the clock is off, by how
// much, and what Sumsub allows.
func TestClockOff(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{SumsubRate: 10, SimClockAhead: 2 * time.Minute})
	e.StartWorker(t, 5*time.Second)
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("clock", e.Entities(t, key, 5)))
	waitOpen(t, e)
	st, err := e.App.Circuit.Status(t.Context())
	if err != nil || !strings.Contains(st.Reason, "Request timestamp is too old or too far in the future") {
		t.Errorf("circuit reason %q (%v), want the timestamp refusal", st.Reason, err)
	}
	// The warning follows the circuit's opening in Redis. The offset comes
	// from Sumsub's Date header, to the second: -2m0s or -1m59s.
	warned := func() bool {
		for _, line := range strings.Split(e.Logs.String(), "\n") {
			var w struct {
				Msg     string
				Allowed string `json:"allowed_skew"`
				Ahead   string `json:"clock_ahead_of_sumsub"`
			}
			if json.Unmarshal([]byte(line), &w) != nil || !strings.Contains(w.Msg, "clock is off") || w.Allowed != "1m0s" {
				continue
			}
			if ahead, err := time.ParseDuration(w.Ahead); err == nil && (ahead+2*time.Minute).Abs() <= time.Second {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(10 * time.Second); !warned() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !warned() {
		t.Errorf("no warning that the clock is off by -2m0s, 1m0s allowed:\n%s", e.Logs.String())
	}
	for row, rec := range records(t, e, batchID) {
		if rec.Status != "pending" {
			t.Errorf("row %d: %s, want pending while the clock is off", row, rec.Status)
		}
	}
}
