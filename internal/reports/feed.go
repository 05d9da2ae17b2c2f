package reports

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/taskqueue"
	"github.com/kycbatch/kycbatch/internal/tracing"
)

// window is how many reports may be queued or processing at once, in all
// businesses together. Turns are given as build tasks are enqueued: a report
// in the queue has had its turn, and the others wait in PostgreSQL, where
// the next turn still goes to the business that has waited longest. So a
// business's first report waits for one of at most window builds to end,
// never behind another business's backlog. One would leave the workers
// idle between a build's end and the next task's pick-up (Asynq polls an
// empty queue about once a second); three keep a build running and one or
// two ready, even while a report waits out a retry in its place.
const window = 3

// feedLock keys the transaction-level advisory lock every feeder takes, in
// every process: the count of the window and the reports it queues are
// one decision, so the window is never overfilled and no report is queued
// twice.
const feedLock = `SELECT pg_advisory_xact_lock(hashtextextended('reports:feed', 0))`

// queueNext marks queued the next pending report in the businesses' turns:
// of the business whose latest turn (queued_at) is oldest, never first, its
// oldest report. clock_timestamp, not the transaction's now(), so that a
// turn given in this transaction counts for the next pick of it.
const queueNext = `
	UPDATE reports SET status = 'queued', queued_at = clock_timestamp(), updated_at = now()
	WHERE id = (
		SELECT r.id FROM reports r
		WHERE r.status = 'pending'
		ORDER BY (SELECT max(s.queued_at) FROM reports s WHERE s.business_id = r.business_id) ASC NULLS FIRST, r.created_at
		LIMIT 1)
	RETURNING id, coalesce(traceparent, '')`

// feeder enqueues the build tasks of pending reports in the businesses'
// turns. The API feeds after an initiate, a worker after each build and in
// its reconciler.
type feeder struct {
	pool  *pgxpool.Pool
	queue taskqueue.Enqueuer
}

// feed queues pending reports while fewer than window are queued or
// processing, and enqueues each one's build task. The tasks are enqueued
// after the commit, so that no task finds its report still pending; a task
// that could not be enqueued (Redis unavailable) leaves its report queued
// for the reconciler, which enqueues it again.
func (f feeder) feed(ctx context.Context) error {
	type queued struct{ id, traceparent string }
	var next []queued
	err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, feedLock); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM reports WHERE status IN ('queued', 'processing')`).Scan(&n); err != nil {
			return err
		}
		for ; n < window; n++ {
			var q queued
			err := tx.QueryRow(ctx, queueNext).Scan(&q.id, &q.traceparent)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			next = append(next, q)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue reports: %w", err)
	}
	// The reports are queued now: their tasks must go out even if the
	// caller gives up.
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for _, q := range next {
		// The task joins the trace of the report's own initiate.
		tctx, span := tracing.StartFrom(ctx, q.traceparent, "reports.queue_build")
		if _, err := f.queue.EnqueueContext(tctx, NewBuildReportTask(tctx, q.id)); err != nil {
			errs = append(errs, fmt.Errorf("enqueue report %s: %w", q.id, err))
		}
		span.End()
	}
	return errors.Join(errs...)
}
