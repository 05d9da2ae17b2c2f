package schedule_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/rediskey"
	"github.com/kycbatch/kycbatch/internal/schedule"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
)

// newScheduler returns a Scheduler on a Redis database of the test's own,
// with an empty schedule (as a worker's first Sync leaves it).
func newScheduler(tb testing.TB) *schedule.Scheduler {
	tb.Helper()
	s := schedule.New(redistest.Client(tb))
	if err := s.Sync(context.Background(), nil); err != nil {
		tb.Fatal(err)
	}
	return s
}

// ids returns n UUIDs in increasing order, as batch ids are (UUIDv7).
func ids(n int) []uuid.UUID {
	list := make([]uuid.UUID, n)
	for i := range list {
		list[i] = uuid.Must(uuid.NewV7())
	}
	return list
}

// picks hands out n records and counts them by business.
func picks(tb testing.TB, s *schedule.Scheduler, n int) map[uuid.UUID]int {
	tb.Helper()
	got := make(map[uuid.UUID]int)
	for range n {
		p, ok, _, err := next(s, 1)
		if err != nil || !ok {
			tb.Fatalf("Next: %+v, %v, %v", p, ok, err)
		}
		got[p.Business]++
	}
	return got
}

// next picks with a window never full.
func next(s *schedule.Scheduler, most int) (schedule.Pick, bool, schedule.Refusal, error) {
	return s.Next(context.Background(), most, 1<<20)
}

func mustAdd(tb testing.TB, s *schedule.Scheduler, business uuid.UUID, weight int, batch uuid.UUID, n int) {
	tb.Helper()
	if err := s.Add(context.Background(), business, weight, batch, n); err != nil {
		tb.Fatal(err)
	}
}

func TestSharesByWeight(t *testing.T) {
	t.Parallel()
	biz := ids(3)
	tests := []struct {
		name    string
		weights []int
		n       int
		want    []int
	}{
		{"equal", []int{1, 1}, 100, []int{50, 50}},
		{"3 to 1", []int{3, 1}, 100, []int{75, 25}},
		{"three businesses", []int{1, 2, 5}, 80, []int{10, 20, 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newScheduler(t)
			batches := ids(len(tt.weights))
			for i, w := range tt.weights {
				mustAdd(t, s, biz[i], w, batches[i], 1000)
			}
			got := picks(t, s, tt.n)
			want := make(map[uuid.UUID]int)
			for i, n := range tt.want {
				want[biz[i]] = n
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("records by business (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFewestLeftFirst: within a business, the batch with the fewest records
// left goes first, the older of two equal ones first; a business's second
// batch does not add to its share.
func TestFewestLeftFirst(t *testing.T) {
	t.Parallel()
	s := newScheduler(t)
	a, b := uuid.New(), uuid.New()
	batches := ids(3)
	large, small, other := batches[0], batches[1], batches[2]
	mustAdd(t, s, a, 1, large, 100)
	mustAdd(t, s, a, 1, small, 3)
	mustAdd(t, s, b, 1, other, 100)
	var got []uuid.UUID
	for range 8 {
		p, ok, _, err := next(s, 1)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if p.Business == a {
			got = append(got, p.Batch)
		}
	}
	if diff := cmp.Diff([]uuid.UUID{small, small, small, large}, got); diff != "" {
		t.Errorf("business a's picks (-want +got):\n%s", diff)
	}
}

// TestSeveralAtOnce: a pick of several records is charged for each of them
// (the shares by weight hold in records, not in picks), and ends with what
// its batch has left.
func TestSeveralAtOnce(t *testing.T) {
	t.Parallel()
	s := newScheduler(t)
	biz, batches := ids(3), ids(3)
	mustAdd(t, s, biz[0], 1, batches[0], 1000)
	mustAdd(t, s, biz[1], 3, batches[1], 1000)
	got := make(map[uuid.UUID]int)
	for range 100 {
		p, ok, _, err := next(s, 4)
		if err != nil || !ok || p.Count != 4 || p.Last {
			t.Fatalf("Next: %+v, %v, %v; want 4 records", p, ok, err)
		}
		got[p.Business] += p.Count
	}
	if want := map[uuid.UUID]int{biz[0]: 100, biz[1]: 300}; !cmp.Equal(want, got) {
		t.Errorf("records by business: %v, want %v", got, want)
	}

	s = newScheduler(t)
	mustAdd(t, s, biz[2], 1, batches[2], 6)
	for _, want := range []schedule.Pick{
		{Business: biz[2], Batch: batches[2], Count: 4},
		{Business: biz[2], Batch: batches[2], Count: 2, Last: true},
	} {
		if p, ok, _, err := next(s, 4); err != nil || !ok || p != want {
			t.Errorf("Next: %+v, %v, %v; want %+v", p, ok, err, want)
		}
	}
}

// TestNewcomerJoinsAtTheVirtualTime: a business with new work competes for
// the very next record, neither behind the others' backlogs nor ahead with
// credit for the time it had none.
func TestNewcomerJoinsAtTheVirtualTime(t *testing.T) {
	t.Parallel()
	s := newScheduler(t)
	biz, batches := ids(3), ids(3)
	mustAdd(t, s, biz[0], 1, batches[0], 1000)
	mustAdd(t, s, biz[1], 1, batches[1], 1000)
	picks(t, s, 500)
	mustAdd(t, s, biz[2], 1, batches[2], 10)
	got := picks(t, s, 30)
	if got[biz[2]] != 10 {
		t.Errorf("the newcomer got %d of the next 30 records, want its third: 10 (%v)", got[biz[2]], got)
	}
}

// TestWindowAndPause: nothing is picked while the queue's pending and
// active tasks fill the window, nor while the queue is paused; a pick is
// never larger than the room left.
func TestWindowAndPause(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Client(t)
	s := schedule.New(rdb)
	if err := s.Sync(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok, why, err := s.Next(ctx, 1, 3); err != nil || ok || why != schedule.Idle {
		t.Fatalf("Next with nothing to feed: %v, %v, %v; want Idle", ok, why, err)
	}
	business, batch := uuid.New(), uuid.New()
	mustAdd(t, s, business, 1, batch, 100)
	// Two tasks pending, one active: a window of 3 is full.
	if err := rdb.LPush(ctx, rediskey.AsynqPending(schedule.Queue), "t1", "t2").Err(); err != nil {
		t.Fatal(err)
	}
	// t3's lease was renewed now; t4's ran out of heartbeats (a ghost).
	lease := rediskey.AsynqLease(schedule.Queue)
	if err := rdb.ZAdd(ctx, lease, redis.Z{Score: float64(time.Now().Add(rediskey.AsynqLeaseDuration).Unix()), Member: "t3"},
		redis.Z{Score: float64(time.Now().Add(rediskey.AsynqLeaseDuration - 3*rediskey.AsynqHeartbeat).Unix()), Member: "t4"}).Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok, why, err := s.Next(ctx, 1, 3); err != nil || ok || why != schedule.Full {
		t.Fatalf("Next with a full window: %v, %v, %v; want Full", ok, why, err)
	}
	if _, ok, why, err := s.Next(ctx, 3, 5); err != nil || ok || why != schedule.Full {
		t.Fatalf("Next of 3 with room for 2: %v, %v, %v; want Full (no room for a whole pick)", ok, why, err)
	}
	if p, ok, _, err := s.Next(ctx, 2, 5); err != nil || !ok || p.Count != 2 {
		t.Fatalf("Next of 2 with room for 2: %+v, %v, %v; want 2 records", p, ok, err)
	}
	if err := rdb.Set(ctx, rediskey.AsynqPaused(schedule.Queue), time.Now().Unix(), 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok, why, err := s.Next(ctx, 1, 100); err != nil || ok || why != schedule.Paused {
		t.Fatalf("Next while paused: %v, %v, %v; want Paused", ok, why, err)
	}
	if err := rdb.Del(ctx, rediskey.AsynqPaused(schedule.Queue)).Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _, err := s.Next(ctx, 1, 100); err != nil || !ok {
		t.Fatalf("Next once resumed: %v, %v", ok, err)
	}
}

// TestChargeRetries: a business charged for its retries gets that many fewer
// of the next records; one with nothing to feed is not charged.
func TestChargeRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newScheduler(t)
	biz, batches := ids(3), ids(2)
	mustAdd(t, s, biz[0], 1, batches[0], 1000)
	mustAdd(t, s, biz[1], 1, batches[1], 1000)
	if err := s.Charge(ctx, biz[0], 10); err != nil {
		t.Fatal(err)
	}
	if err := s.Charge(ctx, biz[2], 10); err != nil {
		t.Fatal(err)
	}
	got := picks(t, s, 30)
	if got[biz[0]] != 10 || got[biz[1]] != 20 {
		t.Errorf("after 10 retries of business 0: %v, want 10 and 20", got)
	}
	total, by, err := s.Waiting(ctx)
	if err != nil || total != 2000-30 || by[biz[0]] != 990 || by[biz[1]] != 980 {
		t.Errorf("Waiting = %d, %v, %v; want 1970 (990 and 980)", total, by, err)
	}
}

func TestDropRefundsThePick(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newScheduler(t)
	biz, batches := ids(2), ids(3)
	mustAdd(t, s, biz[0], 1, batches[0], 100)
	mustAdd(t, s, biz[0], 1, batches[1], 100)
	mustAdd(t, s, biz[1], 1, batches[2], 100)
	// A pick of 4 records of business 0 that sends nothing (its batch had
	// nothing to send after all) is given back: business 0 still gets its half.
	p, _, _, err := next(s, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Drop(ctx, p.Business, p.Batch, p.Count); err != nil {
		t.Fatal(err)
	}
	got := picks(t, s, 10)
	if got[biz[0]] != 5 || got[biz[1]] != 5 {
		t.Errorf("after a refunded pick: %v, want 5 each", got)
	}
	// Dropping a business's last batch takes the business out.
	if err := s.Drop(ctx, biz[1], batches[2], 0); err != nil {
		t.Fatal(err)
	}
	if got := picks(t, s, 10); got[biz[0]] != 10 {
		t.Errorf("after dropping the other business's batch: %v", got)
	}
}

func TestSyncAndLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Client(t)
	s := schedule.New(rdb)
	if _, _, _, err := next(s, 1); err != schedule.ErrLost {
		t.Fatalf("Next of a new Redis: %v, want ErrLost", err)
	}
	if lost, err := s.Lost(ctx); err != nil || !lost {
		t.Fatalf("Lost of a new Redis: %v, %v", lost, err)
	}
	biz, batches := ids(2), ids(2)
	mustAdd(t, s, biz[1], 1, batches[1], 5) // an upload racing the rebuild
	err := s.Sync(ctx, []schedule.Work{{Business: biz[0], Weight: 1, Batch: batches[0], Records: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if got := picks(t, s, 7); got[biz[0]] != 2 || got[biz[1]] != 5 {
		t.Errorf("picks: %v, want 2 and 5", got)
	}
	if _, ok, why, err := next(s, 1); err != nil || ok || why != schedule.Idle {
		t.Errorf("after the synced records: %v, %v, %v; want Idle", ok, why, err)
	}
	in, err := s.Contains(ctx, map[uuid.UUID]uuid.UUID{batches[0]: biz[0], batches[1]: biz[1]})
	if err != nil || in[batches[0]] || in[batches[1]] {
		t.Errorf("Contains after both batches ran out: %v, %v", in, err)
	}
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := next(s, 1); err != schedule.ErrLost {
		t.Errorf("Next after a flush: %v, want ErrLost", err)
	}
}

// TestRebuildOnce: of the processes that find the schedule lost at once,
// one rebuilds it; the others do not read PostgreSQL again.
func TestRebuildOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := schedule.New(redistest.Client(t))
	release := make(chan struct{})
	var runs atomic.Int32
	rebuild := func(context.Context) error { runs.Add(1); <-release; return nil }
	results := make(chan bool, 4)
	for range 4 {
		go func() {
			ran, err := s.Rebuild(ctx, rebuild)
			if err != nil {
				t.Error(err)
			}
			results <- ran
		}()
	}
	// Three return at once, refused; then the one rebuilding is let go.
	for range 3 {
		if <-results {
			t.Error("a second rebuild ran while the first held the lock")
		}
	}
	close(release)
	if !<-results || runs.Load() != 1 {
		t.Errorf("rebuilds: %d, want 1", runs.Load())
	}
	if ran, err := s.Rebuild(ctx, func(context.Context) error { return nil }); err != nil || !ran {
		t.Errorf("a rebuild after the first ended: %v, %v; want it to run", ran, err)
	}
}

// BenchmarkNext measures a scheduling decision (one Lua script in Redis,
// its round trip included) with 10, 100 and 1,000 batches with work across
// up to 100 businesses of weights 1 to 3: its cost must not grow with the
// backlog. Each iteration times 1,000 decisions at each size, side by side.
func BenchmarkNext(b *testing.B) {
	sizes := []int{10, 100, 1000}
	schedulers := make([]*schedule.Scheduler, len(sizes))
	for i, batches := range sizes {
		s := newScheduler(b)
		businesses := ids(min(batches, 100))
		for j, batch := range ids(batches) {
			mustAdd(b, s, businesses[j%len(businesses)], 1+j%3, batch, 1_000_000)
		}
		schedulers[i] = s
	}
	took := make([]time.Duration, len(sizes))
	for b.Loop() {
		for i, s := range schedulers {
			start := time.Now()
			for range 1000 {
				if _, ok, _, err := next(s, 1); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
			took[i] += time.Since(start)
		}
	}
	for i, batches := range sizes {
		b.ReportMetric(float64(took[i].Microseconds())/float64(1000*b.N), fmt.Sprintf("us/decision-%d", batches))
	}
	b.ReportMetric(float64(took[2])/float64(took[0]), "growth-10-to-1000")
}

// TestWatchWakesOnWork: work added anywhere wakes a watcher (an idle worker
// waits on it rather than asking Redis over and over).
func TestWatchWakesOnWork(t *testing.T) {
	t.Parallel()
	s := newScheduler(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	woken := make(chan struct{}, 10)
	go s.Watch(ctx, func() { woken <- struct{}{} })
	biz, batches := ids(1), ids(1)
	// The subscription starts asynchronously: add until a wake-up comes.
	for i := 0; ; i++ {
		mustAdd(t, s, biz[0], 1, batches[0], 1)
		select {
		case <-woken:
			return
		case <-time.After(100 * time.Millisecond):
			if i == 300 {
				t.Fatal("no wake-up in 30 s of additions")
			}
		}
	}
}
