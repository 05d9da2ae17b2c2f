// Package schedule decides whose record gets the next Sumsub permit: the
// businesses with work share the rate in proportion to their weight, and
// within a business the batch with the fewest records left goes first
// (API.md §4). Its state lives in Redis, shared by every worker process;
// PostgreSQL stays the truth, and Sync rebuilds the state from it whenever
// Redis lost it.
//
// The policy is stride scheduling, a deterministic weighted fair queueing:
// each business with work has a pass; the business with the lowest pass gets
// the next record and moves its pass on by 1/weight. A business that gets
// work joins at the pass of the last record handed out (the virtual time),
// so it neither waits behind the others' backlogs nor gets credit for the
// time it had nothing to do. Each decision is a few sorted-set operations in
// one Lua script: its cost grows with the logarithm of the businesses and
// batches with work, not with the records waiting.
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
)

// Redis keys of the schedule. Batches are kept per business under
// batchesPrefix + business id.
const (
	// keyActive: sorted set of the businesses with work, by pass.
	keyActive = "sched:active"
	// keyVTime: the pass of the last record handed out.
	keyVTime = "sched:vtime"
	// keyWeight: hash of the businesses' weights.
	keyWeight = "sched:weight"
	// keyDue: sorted set of records waiting out a retry ("business batch row"),
	// by the Unix time in milliseconds when they may be sent again.
	keyDue = "sched:due"
	// keyEpoch exists while the state is whole: Sync writes it, and a
	// flushed or new Redis has none, which Next reports as ErrLost.
	keyEpoch = "sched:epoch"
	// batchesPrefix + business: sorted set of the business's batches with
	// records to hand out, by how many.
	batchesPrefix = "sched:batches:"
	// wakeChannel is where work appearing is announced to idle workers.
	wakeChannel = "sched:wake"
)

// ErrLost says Redis has no schedule (it was flushed or is new): Sync must
// rebuild it from PostgreSQL.
var ErrLost = errors.New("schedule: the state in Redis is gone")

// Pick is a scheduling decision: Count records of Batch, of Business, may
// be sent now. Last is true when the batch had no other record to hand out.
type Pick struct {
	Business uuid.UUID
	Batch    uuid.UUID
	Count    int
	Last     bool
}

// Scheduler is the schedule in Redis. It is safe for concurrent use, and
// every process of a deployment shares the state through Redis.
type Scheduler struct {
	rdb redis.UniversalClient
}

// New returns the Scheduler on rdb.
func New(rdb redis.UniversalClient) *Scheduler {
	return &Scheduler{rdb: rdb}
}

//go:embed next.lua
var nextLua string

//go:embed add.lua
var addLua string

//go:embed drop.lua
var dropLua string

//go:embed ready.lua
var readyLua string

var (
	nextScript  = redis.NewScript(nextLua)
	addScript   = redis.NewScript(addLua)
	dropScript  = redis.NewScript(dropLua)
	readyScript = redis.NewScript(readyLua)
)

// keys are the keys every script names (Redis wants them declared).
var keys = []string{keyActive, keyVTime, keyWeight, keyDue, keyEpoch}

// Next hands out the next records, at most most of them, all of one batch:
// it first lets in the records whose retry is due, then picks the business
// with the lowest pass and its batch with the fewest records left; the
// business's pass grows by the records handed out over its weight. ok is
// false when no record may be sent now; wake is then when the first retry
// comes due (zero: none is waiting).
func (s *Scheduler) Next(ctx context.Context, most int) (p Pick, ok bool, wake time.Time, err error) {
	res, err := nextScript.Run(ctx, s.rdb, keys, time.Now().UnixMilli(), most).StringSlice()
	if errors.Is(err, redis.Nil) {
		return Pick{}, false, time.Time{}, nil
	}
	if err != nil {
		return Pick{}, false, time.Time{}, fmt.Errorf("schedule: next: %w", err)
	}
	switch {
	case len(res) == 1 && res[0] == "lost":
		return Pick{}, false, time.Time{}, ErrLost
	case len(res) == 1: // the first retry's time
		ms, err := strconv.ParseInt(res[0], 10, 64)
		if err != nil {
			return Pick{}, false, time.Time{}, fmt.Errorf("schedule: next: due time %q: %w", res[0], err)
		}
		return Pick{}, false, time.UnixMilli(ms), nil
	case len(res) == 4:
		if p.Business, err = uuid.Parse(res[0]); err == nil {
			if p.Batch, err = uuid.Parse(res[1]); err == nil {
				p.Count, err = strconv.Atoi(res[2])
			}
		}
		if err != nil {
			return Pick{}, false, time.Time{}, fmt.Errorf("schedule: next: %v: %w", res, err)
		}
		p.Last = res[3] == "1"
		return p, true, time.Time{}, nil
	}
	return Pick{}, false, time.Time{}, nil
}

// Ready tells, without handing anything out, whether a record may be sent
// now; if not, wake is when the first retry comes due (zero: none waits).
// It returns ErrLost when Redis has no schedule.
func (s *Scheduler) Ready(ctx context.Context) (ready bool, wake time.Time, err error) {
	res, err := readyScript.Run(ctx, s.rdb, keys, time.Now().UnixMilli()).Text()
	if err != nil {
		return false, time.Time{}, fmt.Errorf("schedule: ready: %w", err)
	}
	switch res {
	case "lost":
		return false, time.Time{}, ErrLost
	case "now":
		return true, time.Time{}, nil
	case "":
		return false, time.Time{}, nil
	}
	ms, err := strconv.ParseInt(res, 10, 64)
	if err != nil {
		return false, time.Time{}, fmt.Errorf("schedule: ready: due time %q: %w", res, err)
	}
	return false, time.UnixMilli(ms), nil
}

// Add puts n records of the business's batch in the schedule (a batch's
// records, or those found eligible again) with the business's weight (0:
// the one it has), and wakes idle workers.
func (s *Scheduler) Add(ctx context.Context, business uuid.UUID, weight int, batch uuid.UUID, n int) error {
	if n <= 0 {
		return nil
	}
	err := addScript.Run(ctx, s.rdb, keys, business.String(), batch.String(), n, weight, wakeChannel).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("schedule: add %d records of %s: %w", n, batch, err)
	}
	return nil
}

// Later puts a record of the batch back in the schedule at a time, when its
// retry is due.
func (s *Scheduler) Later(ctx context.Context, business, batch uuid.UUID, row int, at time.Time) error {
	err := s.rdb.ZAdd(ctx, keyDue, redis.Z{Score: float64(at.UnixMilli()), Member: dueMember(business, batch, row)}).Err()
	if err != nil {
		return fmt.Errorf("schedule: retry row %d of %s later: %w", row, batch, err)
	}
	return nil
}

func dueMember(business, batch uuid.UUID, row int) string {
	return business.String() + " " + batch.String() + " " + strconv.Itoa(row)
}

// Drop takes the business's batch out of the schedule: cancelled, or found
// with no record to send now. refund gives back the pass the business was
// charged for that many records of a pick that sent nothing (0: none).
func (s *Scheduler) Drop(ctx context.Context, business, batch uuid.UUID, refund int) error {
	err := dropScript.Run(ctx, s.rdb, keys, business.String(), batch.String(), refund).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("schedule: drop %s: %w", batch, err)
	}
	return nil
}

// Lost reports whether Redis has no schedule (flushed, or new).
func (s *Scheduler) Lost(ctx context.Context) (bool, error) {
	n, err := s.rdb.Exists(ctx, keyEpoch).Result()
	if err != nil {
		return false, fmt.Errorf("schedule: %w", err)
	}
	return n == 0, nil
}

// SetWeight sets a business's weight, for its next picks.
func (s *Scheduler) SetWeight(ctx context.Context, business uuid.UUID, weight int) error {
	if err := s.rdb.HSet(ctx, keyWeight, business.String(), weight).Err(); err != nil {
		return fmt.Errorf("schedule: weight of %s: %w", business, err)
	}
	return nil
}

// Contains reports which of the batches (of their businesses) are in the
// schedule, their business with them, for the reconciler to find batches
// that fell out of it.
func (s *Scheduler) Contains(ctx context.Context, batches map[uuid.UUID]uuid.UUID) (map[uuid.UUID]bool, error) {
	pipe := s.rdb.Pipeline()
	type lookup struct{ batch, business *redis.FloatCmd }
	cmds := make(map[uuid.UUID]lookup, len(batches))
	for batch, business := range batches {
		cmds[batch] = lookup{
			batch:    pipe.ZScore(ctx, batchesPrefix+business.String(), batch.String()),
			business: pipe.ZScore(ctx, keyActive, business.String()),
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

// Work is what PostgreSQL says a batch has to send.
type Work struct {
	Business uuid.UUID
	Weight   int
	Batch    uuid.UUID
	// Now is how many of its records may be sent now.
	Now int
	// Later are the rows waiting out a retry, with when each is due.
	Later map[int]time.Time
}

// Sync puts work, the truth read from PostgreSQL, in the schedule, in one
// transaction: after a flush, or on a new Redis. It adds to what is there
// rather than replace it, so that a batch an upload added meanwhile (after
// PostgreSQL was read) is not lost; what it leaves that is stale (a batch
// finished meanwhile) drops out at its next pick. Businesses already in the
// schedule keep their pass; the others join at the virtual time.
func (s *Scheduler) Sync(ctx context.Context, work []Work) error {
	vtime, err := s.rdb.Get(ctx, keyVTime).Float64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("schedule: sync: %w", err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, w := range work {
			business := w.Business.String()
			pipe.HSet(ctx, keyWeight, business, w.Weight)
			for row, at := range w.Later {
				pipe.ZAdd(ctx, keyDue, redis.Z{Score: float64(at.UnixMilli()), Member: dueMember(w.Business, w.Batch, row)})
			}
			if w.Now > 0 {
				pipe.ZAdd(ctx, batchesPrefix+business, redis.Z{Score: float64(w.Now), Member: w.Batch.String()})
				pipe.ZAddNX(ctx, keyActive, redis.Z{Score: vtime, Member: business})
			}
		}
		pipe.Set(ctx, keyEpoch, time.Now().UTC().Format(time.RFC3339), 0)
		pipe.Publish(ctx, wakeChannel, "")
		return nil
	})
	if err != nil {
		return fmt.Errorf("schedule: sync: %w", err)
	}
	return nil
}

// Watch calls wake whenever work is added to the schedule, until ctx ends;
// a worker waits on it instead of asking Redis over and over.
func (s *Scheduler) Watch(ctx context.Context, wake func()) {
	sub := s.rdb.Subscribe(ctx, wakeChannel)
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
