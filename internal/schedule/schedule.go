// Package schedule decides whose record is fed next into the sumsub queue:
// the businesses with work share the rate in proportion to their weight, and
// within a business the batch with the fewest records left goes first
// (API.md §4). Its state lives in Redis, shared by every worker process;
// PostgreSQL stays the truth, and a rebuild restores the state from it
// whenever Redis lost it.
//
// The policy is stride scheduling, a deterministic weighted fair queueing:
// each business with work has a pass; the business with the lowest pass gets
// the next record and moves its pass on by 1/weight. A business that gets
// work joins at the pass of the last record fed (the virtual time), so it
// neither waits behind the others' backlogs nor gets credit for the time it
// had nothing to do. Each decision is a few sorted-set operations in one Lua
// script: its cost grows with the logarithm of the businesses and batches
// with work, not with the records waiting.
//
// The schedule decides the order; the queue only holds a short window of
// it (Next refuses while the queue's pending and active tasks fill the
// window), so that a record of a newcomer waits behind that window at most.
package schedule

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/rediskey"
)

// Queue is the Asynq queue the schedule feeds: the records' (sumsub).
const Queue = "sumsub"

// ErrLost says Redis has no schedule (it was flushed or is new): it must be
// rebuilt from PostgreSQL (Sync).
var ErrLost = errors.New("schedule: the state in Redis is gone")

// Pick is a scheduling decision: Count records of Batch, of Business, may
// be fed now. Last is true when the batch had no other record to feed.
type Pick struct {
	Business uuid.UUID
	Batch    uuid.UUID
	Count    int
	Last     bool
}

// Refusal is why Next picked nothing.
type Refusal int

const (
	// Idle: no record waits to be fed.
	Idle Refusal = iota
	// Paused: the queue is paused (from the dashboard).
	Paused
	// Full: the queue's window is full.
	Full
)

// Scheduler is the schedule in Redis, feeding the sumsub queue. It is safe
// for concurrent use, and every process of a deployment shares the state
// through Redis.
type Scheduler struct {
	rdb redis.UniversalClient
	// next are Next's keys: the schedule's and the queue's.
	next []string
}

// New returns the Scheduler on rdb.
func New(rdb redis.UniversalClient) *Scheduler {
	return &Scheduler{rdb: rdb, next: []string{
		rediskey.SchedActive, rediskey.SchedVTime, rediskey.SchedWeight, rediskey.SchedEpoch, rediskey.SchedBatches,
		rediskey.AsynqPending(Queue), rediskey.AsynqLease(Queue), rediskey.AsynqPaused(Queue),
	}}
}

//go:embed next.lua
var nextLua string

//go:embed add.lua
var addLua string

//go:embed drop.lua
var dropLua string

//go:embed charge.lua
var chargeLua string

var (
	nextScript   = redis.NewScript(nextLua)
	addScript    = redis.NewScript(addLua)
	dropScript   = redis.NewScript(dropLua)
	chargeScript = redis.NewScript(chargeLua)
)

// Next picks the next records to feed, at most most of them, all of one
// batch, once the queue's pending and active tasks leave room for most of
// them in window
// (an active task counts while a live worker renews its lease: a ghost
// that a failover of Redis left active does not hold the window):
// the business with the lowest pass and its batch with the fewest records
// left; the business's pass grows by the records picked over its weight.
// ok is false when nothing is picked, and why says why.
func (s *Scheduler) Next(ctx context.Context, most, window int) (p Pick, ok bool, why Refusal, err error) {
	res, err := nextScript.Run(ctx, s.rdb, s.next, most, window, rediskey.AsynqLiveLease(time.Now())).StringSlice()
	if errors.Is(err, redis.Nil) {
		return Pick{}, false, Idle, nil
	}
	if err != nil {
		return Pick{}, false, Idle, fmt.Errorf("schedule: next: %w", err)
	}
	switch {
	case len(res) == 1 && res[0] == "lost":
		return Pick{}, false, Idle, ErrLost
	case len(res) == 1 && res[0] == "paused":
		return Pick{}, false, Paused, nil
	case len(res) == 1 && res[0] == "full":
		return Pick{}, false, Full, nil
	case len(res) == 4:
		if p.Business, err = uuid.Parse(res[0]); err == nil {
			if p.Batch, err = uuid.Parse(res[1]); err == nil {
				p.Count, err = strconv.Atoi(res[2])
			}
		}
		if err != nil {
			return Pick{}, false, Idle, fmt.Errorf("schedule: next: %v: %w", res, err)
		}
		p.Last = res[3] == "1"
		return p, true, Idle, nil
	}
	return Pick{}, false, Idle, nil
}

// Add puts n records of the business's batch in the schedule (a batch's
// records, or those to feed again) with the business's weight (0: the one
// it has), and wakes idle feeders.
func (s *Scheduler) Add(ctx context.Context, business uuid.UUID, weight int, batch uuid.UUID, n int) error {
	if n <= 0 {
		return nil
	}
	keys := []string{rediskey.SchedActive, rediskey.SchedVTime, rediskey.SchedWeight, rediskey.SchedBatches}
	err := addScript.Run(ctx, s.rdb, keys, business.String(), batch.String(), n, weight, rediskey.SchedWake).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("schedule: add %d records of %s: %w", n, batch, err)
	}
	return nil
}

// Drop takes the business's batch out of the schedule: cancelled, or found
// with no record to feed. refund gives back the pass the business was
// charged for that many records of a pick that fed nothing (0: none).
func (s *Scheduler) Drop(ctx context.Context, business, batch uuid.UUID, refund int) error {
	keys := []string{rediskey.SchedActive, rediskey.SchedWeight, rediskey.SchedBatches}
	err := dropScript.Run(ctx, s.rdb, keys, business.String(), batch.String(), refund).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("schedule: drop %s: %w", batch, err)
	}
	return nil
}

// Charge moves a business's pass on for n records sent outside the
// schedule (retries, which go back to the queue by themselves), so that its
// retries count against its share while it has records to feed. A business
// without any holds no share, and nothing is charged.
func (s *Scheduler) Charge(ctx context.Context, business uuid.UUID, n int) error {
	err := chargeScript.Run(ctx, s.rdb, []string{rediskey.SchedActive, rediskey.SchedWeight}, business.String(), n).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("schedule: charge %s: %w", business, err)
	}
	return nil
}

// Lost reports whether Redis has no schedule (flushed, or new).
func (s *Scheduler) Lost(ctx context.Context) (bool, error) {
	n, err := s.rdb.Exists(ctx, rediskey.SchedEpoch).Result()
	if err != nil {
		return false, fmt.Errorf("schedule: %w", err)
	}
	return n == 0, nil
}

// SetWeight sets a business's weight, for its next picks.
func (s *Scheduler) SetWeight(ctx context.Context, business uuid.UUID, weight int) error {
	if err := s.rdb.HSet(ctx, rediskey.SchedWeight, business.String(), weight).Err(); err != nil {
		return fmt.Errorf("schedule: weight of %s: %w", business, err)
	}
	return nil
}

// Contains reports which of the batches (of their businesses) are in the
// schedule, for the reconciler to find batches that fell out of it.
func (s *Scheduler) Contains(ctx context.Context, batches map[uuid.UUID]uuid.UUID) (map[uuid.UUID]bool, error) {
	pipe := s.rdb.Pipeline()
	type lookup struct{ batch, business *redis.FloatCmd }
	cmds := make(map[uuid.UUID]lookup, len(batches))
	for batch, business := range batches {
		cmds[batch] = lookup{
			batch:    pipe.ZScore(ctx, rediskey.SchedBatches+business.String(), batch.String()),
			business: pipe.ZScore(ctx, rediskey.SchedActive, business.String()),
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("schedule: look up batches: %w", err)
	}
	in := make(map[uuid.UUID]bool, len(batches))
	for batch, l := range cmds {
		in[batch] = l.batch.Err() == nil && l.business.Err() == nil
	}
	return in, nil
}

// Waiting counts the records the schedule holds, in all and by business:
// the backlog waiting to be fed.
func (s *Scheduler) Waiting(ctx context.Context) (total int, byBusiness map[uuid.UUID]int, err error) {
	businesses, err := s.rdb.ZRange(ctx, rediskey.SchedActive, 0, -1).Result()
	if err != nil {
		return 0, nil, fmt.Errorf("schedule: waiting: %w", err)
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.ZSliceCmd, len(businesses))
	for i, b := range businesses {
		cmds[i] = pipe.ZRangeWithScores(ctx, rediskey.SchedBatches+b, 0, -1)
	}
	if len(businesses) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, nil, fmt.Errorf("schedule: waiting: %w", err)
		}
	}
	byBusiness = make(map[uuid.UUID]int, len(businesses))
	for i, b := range businesses {
		id, err := uuid.Parse(b)
		if err != nil {
			continue
		}
		for _, z := range cmds[i].Val() {
			byBusiness[id] += int(z.Score)
			total += int(z.Score)
		}
	}
	return total, byBusiness, nil
}

// Work is what PostgreSQL says a batch has to feed.
type Work struct {
	Business uuid.UUID
	Weight   int
	Batch    uuid.UUID
	// Records is how many of its records wait for a task.
	Records int
}

// Sync puts work, the truth read from PostgreSQL, in the schedule, in one
// transaction: after a flush, or on a new Redis. It sets the batches it is
// given and leaves the others, so that a batch an upload added meanwhile
// (after PostgreSQL was read) is not lost; what it leaves that is stale (a batch
// finished meanwhile) drops out at its next pick. Businesses already in the
// schedule keep their pass; the others join at the virtual time.
func (s *Scheduler) Sync(ctx context.Context, work []Work) error {
	vtime, err := s.rdb.Get(ctx, rediskey.SchedVTime).Float64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("schedule: sync: %w", err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, w := range work {
			business := w.Business.String()
			pipe.HSet(ctx, rediskey.SchedWeight, business, w.Weight)
			if w.Records > 0 {
				pipe.ZAdd(ctx, rediskey.SchedBatches+business, redis.Z{Score: float64(w.Records), Member: w.Batch.String()})
				pipe.ZAddNX(ctx, rediskey.SchedActive, redis.Z{Score: vtime, Member: business})
			}
		}
		pipe.Set(ctx, rediskey.SchedEpoch, time.Now().UTC().Format(time.RFC3339), 0)
		pipe.Publish(ctx, rediskey.SchedWake, "")
		return nil
	})
	if err != nil {
		return fmt.Errorf("schedule: sync: %w", err)
	}
	return nil
}

// rebuildLease bounds a rebuild: a process that dies holding the lock
// frees it after this.
const rebuildLease = time.Minute

// Rebuild runs rebuild, which reads PostgreSQL and calls Sync, unless
// another process is rebuilding already (then it returns false at once:
// that one's rebuild will do), so that the processes that find the
// schedule lost at once read PostgreSQL once.
func (s *Scheduler) Rebuild(ctx context.Context, rebuild func(context.Context) error) (bool, error) {
	token := uuid.NewString()
	ok, err := s.rdb.SetNX(ctx, rediskey.SchedRebuild, token, rebuildLease).Result()
	if err != nil {
		return false, fmt.Errorf("schedule: rebuild lock: %w", err)
	}
	if !ok {
		return false, nil
	}
	defer releaseScript.Run(context.WithoutCancel(ctx), s.rdb, []string{rediskey.SchedRebuild}, token)
	return true, rebuild(ctx)
}

// releaseScript deletes a lock if the caller still holds it.
var releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// Watch calls wake whenever work is added to the schedule, until ctx ends;
// a feeder waits on it instead of asking Redis over and over.
func (s *Scheduler) Watch(ctx context.Context, wake func()) {
	sub := s.rdb.Subscribe(ctx, rediskey.SchedWake)
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			wake()
		}
	}
}
