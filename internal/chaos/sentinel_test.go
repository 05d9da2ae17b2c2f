package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
)

// TestSentinelFailover runs three businesses' batches through the API and
// two workers on a Redis behind Sentinel (REDIS_URL=redis-sentinel://…),
// and SIGKILLs the primary once a third of the records are done. Sentinel
// promotes the replica; every process must follow it by itself: every
// record ends final and counted once, no share token is imported twice,
// the limiter keeps the limit in every second (the simulator answers a
// 429 to the first request over it: at most a rare one), and the reports
// are built. It reports the pause: the longest wait for a record to finish
// from the primary's death on.
func TestSentinelFailover(t *testing.T) {
	const rate, records = 20, 300
	ctx := context.Background()
	redis := startSentinels(t)
	dbURL := dbtest.URL(t)
	svc := startService(t, dbURL, redis.url, rate)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	plans := make([]batchPlan, businesses)
	for i := range plans {
		plans[i] = newPlan(t, svc.c, svc.keys[i], i, records/businesses)
		plans[i].id = svc.c.mustUpload(t, plans[i])
	}
	final := func() (n int) {
		pool.QueryRow(ctx, `SELECT count(*) FROM batch_records WHERE status <> 'pending'`).Scan(&n) //nolint:errcheck // 0 until it answers
		return n
	}
	waitUntil(t, time.Minute, "a third of the records final", func() bool { return final() >= records/3 })
	old := redis.master(t)
	killed := time.Now()
	redis.primary.kill(t)
	doneAtKill := final()
	waitUntil(t, 30*time.Second, "Sentinel promotes the replica", func() bool { m := redis.master(t); return m != "" && m != old })
	promoted := time.Since(killed)

	for _, p := range plans {
		if !svc.c.waitDone(t, p, 3*time.Minute) {
			t.FailNow()
		}
	}
	took := time.Since(killed)
	// The pause: the longest wait for a record to finish, from the kill on
	// (calls in flight at the kill finish at once; at the rate, records
	// finish 1/rate apart).
	var pause time.Duration
	if err := pool.QueryRow(ctx, `
		SELECT max(gap) FROM (
			SELECT at - lag(at) OVER (ORDER BY at) AS gap
			FROM (SELECT processed_at AS at FROM batch_records WHERE processed_at >= $1 UNION ALL SELECT $1) finished) gaps`,
		killed).Scan(&pause); err != nil {
		t.Fatal(err)
	}

	unknown, _ := checkRecords(t, pool, plans, simTokens(t, svc.simURL))
	if unknown != 0 {
		t.Errorf("%d records with an unknown outcome: no Sumsub answer was lost", unknown)
	}
	stats := simStats(t, svc.simURL)
	// A 429 is a window that saw more than the limit. The limiter's margin
	// leaves a rare one to a request delayed more than 6 ms between its
	// permit and Sumsub on a busy machine (BenchmarkRateUse measures it on
	// a quiet one); a limiter that lost its state or was split between two
	// primaries would show a burst of them.
	if stats.Rejected429 > records/100 {
		t.Errorf("Sumsub refused %d requests over its limit of %d/s, want at most %d (a rare late request): the limiter let too many through",
			stats.Rejected429, rate, records/100)
	}
	checkReports(t, svc.c, plans)
	t.Logf("Sentinel failover: %d records in %d batches of %d businesses at %d/s; the primary SIGKILLed with %d records final: "+
		"Sentinel promoted the replica %.1f s later, records stopped for %.1f s at most, the rest in %.1f s; "+
		"%d 429s, at most %d requests in any second, no token imported twice, reports built: %s",
		records, len(plans), businesses, rate, doneAtKill, promoted.Seconds(), pause.Seconds(), took.Seconds(),
		stats.Rejected429, stats.MaxRequestsInAnySecond, survived(t))
}
