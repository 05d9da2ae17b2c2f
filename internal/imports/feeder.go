package imports

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/hibiken/asynq"

	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/rediskey"
	"github.com/kycbatch/kycbatch/internal/schedule"
)

// Waits of the feeder between two looks at the schedule.
const (
	// idleCheck: nothing waits. Work added anywhere wakes every feeder
	// (schedule.Watch); this is only a lost wake-up's cost.
	idleCheck = 5 * time.Second
	// fullCheck: the window is full. A task of this process ending wakes
	// the feeder at once; this covers those of other processes.
	fullCheck = 100 * time.Millisecond
	// pausedCheck: the queue is paused; the feeder resumes within this of
	// the queue.
	pausedCheck = 500 * time.Millisecond
	// errorCheck: Redis or PostgreSQL failed.
	errorCheck = time.Second
)

// windowSpan is how much of the rate the window holds waiting for permits:
// a record of a business that just got work waits behind about this much.
const windowSpan = time.Second

// window is how many record tasks may be pending or active in the queue at
// once (all processes together): a second of the rate, plus the calls in
// flight (the rate times Sumsub's recent latency), so that the rate stays
// full however slow Sumsub answers; at most four times a process's
// concurrency, which keeps every worker busy at a rate far above Sumsub's.
func (r *Records) window() int {
	w := math.Ceil(float64(r.cfg.Rate) * (windowSpan + r.latency.get()).Seconds())
	return max(1, min(int(w), 4*r.cfg.Concurrency))
}

// pickSize is how many records one decision feeds: what the rate sends in
// five milliseconds (at least one: at Sumsub's 10/s, each record is picked
// alone). At a high rate it shares a decision's and a feed's round trips
// among several records; the schedule's grain stays a few milliseconds of
// the rate.
func (r *Records) pickSize() int {
	return max(1, min(r.cfg.Concurrency, r.cfg.Rate/200))
}

// Feed moves records from the schedule into the queue, in the schedule's
// order, while the window has room, until ctx ends. Every worker process
// runs one; they share the schedule and the window through Redis. While no
// record waits, it asks the schedule one question every idleCheck, or when
// woken (work added anywhere wakes every feeder). While Sumsub's circuit is
// open it feeds nothing (and probes Sumsub when its turn comes).
func (r *Records) Feed(ctx context.Context) {
	go r.cfg.Schedule.Watch(ctx, r.done.notify)
	for ctx.Err() == nil {
		if wait := r.feedOnce(ctx); wait > 0 {
			r.done.wait(ctx, wait)
		}
	}
}

// feedOnce makes one decision and feeds its records; it returns how long
// to wait before the next (0: at once).
func (r *Records) feedOnce(ctx context.Context) time.Duration {
	if until := r.cfg.Circuit.Allow(ctx, r.probe); !until.IsZero() {
		return time.Until(until)
	}
	pick, ok, why, err := r.cfg.Schedule.Next(ctx, r.pickSize(), r.window())
	if errors.Is(err, schedule.ErrLost) {
		if err = r.rebuild(ctx); err == nil {
			return fullCheck // this rebuild, or another process's, is under way or done
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Logger.WarnContext(ctx, "ask the schedule for records to feed; trying again", "error", err)
			r.unreachable = true
		}
		return errorCheck
	}
	if r.unreachable {
		// Redis is back (restarted, or failed over to a replica that
		// missed its primary's last writes): look for the tasks it lost
		// now rather than at the next reconciliation.
		r.unreachable = false
		go r.afterOutage(context.WithoutCancel(ctx))
	}
	switch {
	case ok:
	case why == schedule.Full:
		return fullCheck
	case why == schedule.Paused:
		return pausedCheck
	default:
		return idleCheck
	}
	if err := r.feed(ctx, pick); err != nil {
		if ctx.Err() == nil {
			r.cfg.Logger.WarnContext(ctx, "feed records; the reconciler will if this keeps failing", "batch_id", pick.Batch, "error", err)
		}
		return errorCheck
	}
	return 0
}

// feed puts the picked records of a batch in the queue: marked fed in
// PostgreSQL, then enqueued. A record it could not enqueue goes back to
// wait for a feed, and its count back to the schedule.
func (r *Records) feed(ctx context.Context, pick schedule.Pick) error {
	after, _ := r.cursors.Load(pick.Batch)
	cursor, _ := after.(int)
	fed, err := ingest.Feed(ctx, r.cfg.Pool, pick.Batch, cursor, pick.Count)
	if err == nil && len(fed.Records) == 0 && cursor > 0 {
		// Nothing after the cursor: a record put back behind it, or none.
		fed, err = ingest.Feed(ctx, r.cfg.Pool, pick.Batch, 0, pick.Count)
	}
	if err != nil {
		return errors.Join(err, r.cfg.Schedule.Add(ctx, pick.Business, 0, pick.Batch, pick.Count))
	}
	if len(fed.Records) == 0 {
		// Nothing to feed: its records are all in the queue or final.
		r.cursors.Delete(pick.Batch)
		return r.cfg.Schedule.Drop(ctx, pick.Business, pick.Batch, pick.Count)
	}
	r.cursors.Store(pick.Batch, fed.Records[len(fed.Records)-1].Row)
	var lost []ingest.Ref
	var errs []error
	for _, ref := range fed.Records {
		_, err := r.cfg.Queue.EnqueueContext(ctx, r.newTask(ref, fed.Business.String(), fed.Traceparent))
		if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			lost = append(lost, ref)
			errs = append(errs, err)
		}
	}
	if len(lost) > 0 {
		ctx := context.WithoutCancel(ctx)
		errs = append(errs, ingest.Unfeed(ctx, r.cfg.Pool, lost), r.cfg.Schedule.Add(ctx, pick.Business, 0, pick.Batch, len(lost)))
	}
	if pick.Last {
		r.cursors.Delete(pick.Batch)
		errs = append(errs, r.mend(ctx, pick))
	}
	return errors.Join(errs...)
}

// mend puts back in the schedule the records of a batch whose count ran out
// while some still wait for a feed (a pick whose feed a crash lost).
func (r *Records) mend(ctx context.Context, pick schedule.Pick) error {
	n, err := ingest.Unqueued(ctx, r.cfg.Pool, pick.Batch)
	if err == nil && n > 0 {
		err = r.cfg.Schedule.Add(ctx, pick.Business, 0, pick.Batch, n)
	}
	return err
}

// probe sends the circuit's probe, with a permit like any call.
func (r *Records) probe(ctx context.Context) error {
	if err := r.cfg.Limiter.Wait(ctx, maxPermitWait); err != nil {
		return err
	}
	return r.cfg.Sumsub.Probe(ctx)
}

// afterOutage feeds again the records whose tasks Redis lost while the
// feeder could not reach it: those it never got, and the ghosts (tasks it
// still holds active that no worker works on), which show as such once two
// heartbeats are missed. It looks every couple of seconds for as long as
// that takes, rather than wait for the reconciler and Asynq's recoverer.
func (r *Records) afterOutage(ctx context.Context) {
	const every = 2 * time.Second
	for waited := time.Duration(0); waited <= taskCheckAge+rediskey.AsynqLeaseDuration; waited += every {
		time.Sleep(every)
		if err := r.refeed(ctx); err != nil {
			r.cfg.Logger.WarnContext(ctx, "look for the record tasks Redis lost; the reconciler will", "error", err)
			return
		}
	}
}
