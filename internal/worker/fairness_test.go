package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// The tests below share Sumsub's real rate of 10 requests a second between
// businesses and count who got the records, not how long anything took: the
// order of the decisions holds however slow the machine.

// share is a business's records among those processed in a stretch of time.
type share struct {
	mine, all int
}

func (s share) String() string {
	return fmt.Sprintf("%d of %d (%.0f%%)", s.mine, s.all, 100*s.fraction())
}

func (s share) fraction() float64 {
	if s.all == 0 {
		return 0
	}
	return float64(s.mine) / float64(s.all)
}

// shares counts the records of the batches processed from since to until
// (zero: no end), by business.
func shares(t testing.TB, e *apitest.Env, batches []string, since, until time.Time) map[uuid.UUID]share {
	t.Helper()
	if until.IsZero() {
		until = time.Now().Add(time.Hour)
	}
	rows, err := e.Pool.Query(context.Background(), `
		SELECT b.business_id, count(*) FROM batch_records r JOIN batches b ON b.id = r.batch_id
		WHERE r.batch_id = ANY($1) AND r.status IN ('succeeded', 'failed') AND r.processed_at BETWEEN $2 AND $3
		GROUP BY b.business_id`, batches, since, until)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	counts := make(map[uuid.UUID]int)
	all := 0
	for rows.Next() {
		var business uuid.UUID
		var n int
		if err := rows.Scan(&business, &n); err != nil {
			t.Fatal(err)
		}
		counts[business] = n
		all += n
	}
	out := make(map[uuid.UUID]share, len(counts))
	for business, n := range counts {
		out[business] = share{mine: n, all: all}
	}
	return out
}

// processedOf waits until the batches have processed at least n records in all.
func processedOf(t testing.TB, e *apitest.Env, batches []string, n int, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d records processed", n), func() bool {
		var done int
		err := e.Pool.QueryRow(context.Background(), `
			SELECT count(*) FROM batch_records WHERE batch_id = ANY($1) AND status IN ('succeeded', 'failed')`, batches).Scan(&done)
		if err != nil {
			t.Fatal(err)
		}
		return done >= n
	})
}

// fairBusiness is a business of a fairness test: its key, id and weight.
type fairBusiness struct {
	key    string
	id     uuid.UUID
	weight int
}

// newFairBusiness creates a business with the weight (as api
// set-business-weight stores it) and n entities, returning their ids.
func newFairBusiness(t testing.TB, e *apitest.Env, weight, n int) (fairBusiness, []uuid.UUID) {
	t.Helper()
	key, id := e.Business(t)
	if _, err := e.Pool.Exec(context.Background(), `UPDATE businesses SET weight = $2 WHERE id = $1`, id, weight); err != nil {
		t.Fatal(err)
	}
	return fairBusiness{key: key, id: id, weight: weight}, entities(t, e, id, n)
}

// TestBusinessesShareTheRate: while two businesses have work, each gets its
// weight's share of the rate, whatever the size and number of its batches.
func TestBusinessesShareTheRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// weightA and weightB are the businesses' weights; B uploads its
		// records in batchesB batches after A uploads one batch.
		weightA, weightB, batchesB int
		// lowA and highA bound A's share while both have work.
		lowA, highA float64
	}{
		// Ten small batches of B do not starve A's large one.
		{name: "one large batch beside ten small ones", weightA: 1, weightB: 1, batchesB: 10, lowA: 0.40, highA: 0.60},
		{name: "weights 3 and 1", weightA: 3, weightB: 1, batchesB: 1, lowA: 0.65, highA: 0.85},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const rowsA, rowsB = 300, 300
			e := apitest.New(t, apitest.Options{SumsubRate: 10})
			a, idsA := newFairBusiness(t, e, tt.weightA, rowsA)
			b, idsB := newFairBusiness(t, e, tt.weightB, rowsB)
			e.StartWorker(t, time.Second)
			batches := []string{e.UploadBatch(t, a.key, apitest.CSVFile("a", idsA))}
			since := time.Now()
			per := rowsB / tt.batchesB
			for i := range tt.batchesB {
				batches = append(batches, e.UploadBatch(t, b.key, apitest.CSVFile(fmt.Sprintf("b%d", i), idsB[i*per:(i+1)*per])))
			}
			// About twelve seconds at 10/s: both still have work at the end.
			processedOf(t, e, batches, 120, 2*time.Minute)
			got := shares(t, e, batches, since, time.Time{})
			t.Logf("A (weight %d): %s; B (weight %d): %s", a.weight, got[a.id], b.weight, got[b.id])
			if f := got[a.id].fraction(); f < tt.lowA || f > tt.highA {
				t.Errorf("A got %s of the records while both had work, want %.0f%% to %.0f%%", got[a.id], 100*tt.lowA, 100*tt.highA)
			}
			cancelAll(t, e, map[string]string{batches[0]: a.key}, b.key, batches[1:])
		})
	}
}

// TestSmallBusinessGetsItsShare: a third business's 10-record batch, uploaded
// while two others saturate the rate, gets a third of the records from its
// upload to its last record.
func TestSmallBusinessGetsItsShare(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{SumsubRate: 10})
	a, idsA := newFairBusiness(t, e, 1, 200)
	b, idsB := newFairBusiness(t, e, 1, 200)
	c, idsC := newFairBusiness(t, e, 1, 10)
	e.StartWorker(t, time.Second)
	large := []string{e.UploadBatch(t, a.key, apitest.CSVFile("a", idsA)), e.UploadBatch(t, b.key, apitest.CSVFile("b", idsB))}
	processedOf(t, e, large, 20, time.Minute)

	since := time.Now()
	small := e.UploadBatch(t, c.key, apitest.CSVFile("c", idsC))
	final := e.WaitBatch(t, c.key, small, time.Minute)
	completed, err := time.Parse(time.RFC3339Nano, final["completedAt"].(string))
	if err != nil {
		t.Fatal(err)
	}
	got := shares(t, e, append(large, small), since, completed)
	t.Logf("C's 10 records done %s after its upload; C: %s, A: %s, B: %s",
		completed.Sub(since).Round(10*time.Millisecond), got[c.id], got[a.id], got[b.id])
	if f := got[c.id].fraction(); f < 0.25 {
		t.Errorf("C got %s of the records while it had work, want about a third", got[c.id])
	}
	cancelAll(t, e, map[string]string{large[0]: a.key, large[1]: b.key}, "", nil)
}

// cancelAll cancels the batches still running (each with its business's
// key), so that the worker stops promptly at the test's end.
func cancelAll(t testing.TB, e *apitest.Env, keyOf map[string]string, key string, more []string) {
	t.Helper()
	for _, batch := range more {
		keyOf[batch] = key
	}
	for batch, k := range keyOf {
		e.Call(t, http.MethodPost, "/entity/kyc/import/batch/"+batch+"/cancel", k, nil)
	}
}
