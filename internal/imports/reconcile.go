package imports

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/rediskey"
	"github.com/kycbatch/kycbatch/internal/schedule"
)

// taskCheckAge is how long a record's task may go unseen (since it was fed,
// its last attempt, or the reconciler last found it) before the reconciler
// looks for it in Redis: long enough that a task being enqueued is not
// taken for lost (and were it, its record would only get a new feed), short
// enough that a record whose task a failover lost goes again soon.
const taskCheckAge = 5 * time.Second

// maxChecks bounds the tasks one reconciliation looks for; the next one
// looks for the rest.
const maxChecks = 10000

// Reconcile mends, from PostgreSQL, what Redis lost or a crashed process
// left behind: the schedule (rebuilt when Redis has none; otherwise the
// batches that fell out of it put back), the record tasks Redis lost (a
// flush, a task deleted or archived from the dashboard, one whose last
// retry an internal failure used up: the record is fed again, by a new
// feed), the batches whose last record's worker died before completing
// them, and the businesses' weights.
func (r *Records) Reconcile(ctx context.Context) error {
	batches, err := ingest.ActiveBatches(ctx, r.cfg.Pool)
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range batches {
		if b.Remaining == 0 {
			errs = append(errs, r.complete(ctx, b.ID))
		}
	}
	lost, err := r.cfg.Schedule.Lost(ctx)
	switch {
	case err != nil:
		errs = append(errs, err)
	case lost:
		errs = append(errs, r.rebuild(ctx))
	default:
		errs = append(errs, r.putBack(ctx, batches), r.refeed(ctx), r.refreshWeights(ctx, batches))
	}
	r.cfg.Logger.DebugContext(ctx, "reconciled records", "active_batches", len(batches), "schedule_rebuilt", lost)
	return errors.Join(errs...)
}

// complete completes a batch every record of which is final (its last
// record's worker died before completing it), with its event.
func (r *Records) complete(ctx context.Context, id uuid.UUID) error {
	completed, err := ingest.CompleteIfDone(ctx, r.cfg.Pool, id)
	if completed {
		r.cfg.Outbox.Announce(ctx, event.Key{Type: event.BatchCompleted, Subject: id.String()})
	}
	return err
}

// rebuild rebuilds the schedule from PostgreSQL once Redis lost it (which
// lost every task with it): every record not final waits for a feed again,
// and every active batch is scheduled with them, its count read from its
// counters (no record is read but those that were queued). One process
// rebuilds at a time; the others find the schedule whole when it is done.
func (r *Records) rebuild(ctx context.Context) error {
	_, err := r.cfg.Schedule.Rebuild(ctx, func(ctx context.Context) error {
		if err := ingest.UnqueueAll(ctx, r.cfg.Pool); err != nil {
			return err
		}
		batches, err := ingest.ActiveBatches(ctx, r.cfg.Pool)
		if err != nil {
			return err
		}
		businesses := make([]uuid.UUID, len(batches))
		for i, b := range batches {
			businesses[i] = b.Business
		}
		weights, err := auth.Weights(ctx, r.cfg.Pool, businesses)
		if err != nil {
			return err
		}
		work := make([]schedule.Work, 0, len(batches))
		records := 0
		for _, b := range batches {
			work = append(work, schedule.Work{Business: b.Business, Weight: max(weights[b.Business], 1), Batch: b.ID, Records: b.Remaining})
			records += b.Remaining
		}
		if err := r.cfg.Schedule.Sync(ctx, work); err != nil {
			return err
		}
		if records > 0 {
			// Work was lost with Redis (a new Redis holds nothing to lose).
			r.cfg.Metrics.Repairs.WithLabelValues(RepairScheduleRebuilt).Inc()
			r.cfg.Logger.WarnContext(ctx, "schedule rebuilt from PostgreSQL: Redis had lost it, and the record tasks with it",
				"batches", len(work), "records", records)
		}
		return nil
	})
	return err
}

// Kinds of repairs, for kycbatch_reconciler_repairs_total.
const (
	RepairScheduleRebuilt = "schedule_rebuilt"
	RepairBatchPutBack    = "batch_put_back"
	RepairTaskRefed       = "task_refed"
)

// Repairs are every kind of repair, for the metrics to start at 0.
var Repairs = []string{RepairScheduleRebuilt, RepairBatchPutBack, RepairTaskRefed}

// putBack puts in the schedule the active batches that fell out of it with
// records waiting for a feed (a pick whose feed a crash lost, an upload
// whose Redis was down).
func (r *Records) putBack(ctx context.Context, batches []ingest.Active) error {
	of := make(map[uuid.UUID]uuid.UUID, len(batches))
	for _, b := range batches {
		if b.Remaining > 0 {
			of[b.ID] = b.Business
		}
	}
	in, err := r.cfg.Schedule.Contains(ctx, of)
	if err != nil {
		return err
	}
	var errs []error
	for batch, business := range of {
		if in[batch] {
			continue
		}
		n, err := ingest.Unqueued(ctx, r.cfg.Pool, batch)
		if err == nil && n > 0 {
			err = r.cfg.Schedule.Add(ctx, business, 0, batch, n)
			r.cfg.Metrics.Repairs.WithLabelValues(RepairBatchPutBack).Inc()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// refeed looks in Redis for the tasks of the queued records not seen for a
// while, and feeds again the records whose task is gone (deleted, lost
// with Redis), active with no worker on it (a ghost a failover left), or
// finished while the record is not (archived after an internal failure
// used up its retries): a new feed, so a task of the old one that comes
// back does nothing. The archived task stays for ops to read.
func (r *Records) refeed(ctx context.Context) error {
	list, err := ingest.QueuedBefore(ctx, r.cfg.Pool, time.Now().Add(-taskCheckAge), maxChecks)
	if err != nil {
		return err
	}
	var seen, lost []ingest.Ref
	business := make(map[uuid.UUID]uuid.UUID)
	alive := rediskey.AsynqLiveLease(time.Now())
	for _, q := range list {
		id := TaskID(q.Ref)
		info, err := r.cfg.Inspector.GetTaskInfo(Queue, id)
		switch {
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		case err != nil:
			return err
		case info.State == asynq.TaskStateActive:
			// Active, but is a worker on it? A ghost's lease is no
			// longer renewed (see rediskey.AsynqLiveLease).
			ends, err := r.cfg.Redis.ZScore(ctx, rediskey.AsynqLease(Queue), id).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			if err == nil && int64(ends) >= alive {
				seen = append(seen, q.Ref)
				continue
			}
		case info.State != asynq.TaskStateCompleted && info.State != asynq.TaskStateArchived:
			seen = append(seen, q.Ref)
			continue
		}
		lost = append(lost, q.Ref)
		business[q.Batch] = q.Business
	}
	if err := ingest.Touch(ctx, r.cfg.Pool, seen); err != nil {
		return err
	}
	n, err := ingest.Unqueue(ctx, r.cfg.Pool, lost)
	if err != nil {
		return err
	}
	var errs []error
	for batch, count := range n {
		r.cfg.Metrics.Repairs.WithLabelValues(RepairTaskRefed).Add(float64(count))
		errs = append(errs, r.cfg.Schedule.Add(ctx, business[batch], 0, batch, count))
	}
	if len(n) > 0 {
		r.cfg.Logger.WarnContext(ctx, "fed again the records whose task Redis had lost", "records", len(lost))
	}
	return errors.Join(errs...)
}

// refreshWeights gives the schedule the weights of the businesses with work,
// as PostgreSQL has them (set-business-weight may not have reached Redis).
func (r *Records) refreshWeights(ctx context.Context, batches []ingest.Active) error {
	businesses := make([]uuid.UUID, 0, len(batches))
	for _, b := range batches {
		businesses = append(businesses, b.Business)
	}
	weights, err := auth.Weights(ctx, r.cfg.Pool, businesses)
	if err != nil {
		return err
	}
	var errs []error
	for business, w := range weights {
		errs = append(errs, r.cfg.Schedule.SetWeight(ctx, business, w))
	}
	return errors.Join(errs...)
}
