package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/schedule"
)

// activeBatch is a batch not finished yet, as the reconciler sees it.
type activeBatch struct {
	ID        uuid.UUID
	Business  uuid.UUID
	Status    string
	Remaining int
}

// Reconcile mends, from PostgreSQL, what Redis lost or a crashed process
// left behind: the schedule (rebuilt when Redis has none; otherwise the
// batches that fell out of it put back), the records whose call was lost
// with its worker (back in the schedule once their lease is over, or
// cancelled when their batch is), the batches whose last record's worker
// died before completing them, the businesses' weights, the raw files of
// uploads that were never stored, and those of batches final for longer
// than UPLOAD_RETENTION.
func (p *Pipeline) Reconcile(ctx context.Context) error {
	batches, err := p.activeBatches(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range batches {
		if b.Remaining == 0 {
			errs = append(errs, p.complete(ctx, b.ID))
		}
	}
	lost, err := p.sched.Lost(ctx)
	switch {
	case err != nil:
		errs = append(errs, err)
	case lost:
		errs = append(errs, p.Sync(ctx))
	default:
		errs = append(errs, p.putBack(ctx, batches), p.relaunch(ctx), p.refreshWeights(ctx, batches))
	}
	swept, err := SweepUploads(ctx, p.records.pool, p.files)
	if swept > 0 {
		p.logger.WarnContext(ctx, "deleted the raw files of uploads that were never stored", "files", swept)
	}
	errs = append(errs, err)
	expired, err := ExpireUploads(ctx, p.records.pool, p.files, p.cfg.UploadRetention)
	if expired > 0 {
		p.logger.InfoContext(ctx, "deleted the raw uploads of batches final for longer than UPLOAD_RETENTION", "files", expired)
	}
	p.logger.DebugContext(ctx, "reconciled", "active_batches", len(batches), "schedule_rebuilt", lost)
	return errors.Join(append(errs, err)...)
}

// activeBatches lists the batches pending or in progress, with how many of
// their records are not final.
func (p *Pipeline) activeBatches(ctx context.Context) ([]activeBatch, error) {
	rows, err := p.records.pool.Query(ctx, `
		SELECT id, business_id, status, total_records - succeeded_records - failed_records - cancelled_records
		FROM batch_progress WHERE status IN ('pending', 'in_progress')`)
	if err != nil {
		return nil, fmt.Errorf("list active batches: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[activeBatch])
	if err != nil {
		return nil, fmt.Errorf("list active batches: %w", err)
	}
	return list, nil
}

// complete completes a batch every record of which is final (its last
// record's worker died before completing it), with its event.
func (p *Pipeline) complete(ctx context.Context, id uuid.UUID) error {
	completed, err := p.records.completeIfDone(ctx, id)
	if completed {
		p.outbox.Announce(ctx, event.Key{Type: event.BatchCompleted, Subject: id.String()})
	}
	return err
}

// Sync rebuilds the schedule from PostgreSQL: every active batch with the
// records it may send now, and the records waiting out a retry or a lease,
// with when.
func (p *Pipeline) Sync(ctx context.Context) error {
	rows, err := p.records.pool.Query(ctx, `
		SELECT b.business_id, r.batch_id, count(*) FROM batch_records r JOIN batches b ON b.id = r.batch_id
		WHERE r.status = 'pending' AND b.status IN ('pending', 'in_progress') AND `+fmt.Sprintf(eligibleSQL, "$1")+`
		GROUP BY b.business_id, r.batch_id`, p.cfg.lease())
	if err != nil {
		return fmt.Errorf("read the work to schedule: %w", err)
	}
	work := make(map[uuid.UUID]*schedule.Work)
	var business, batch uuid.UUID
	var n int
	_, err = pgx.ForEachRow(rows, []any{&business, &batch, &n}, func() error {
		work[batch] = &schedule.Work{Business: business, Batch: batch, Now: n}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the work to schedule: %w", err)
	}
	waiting, err := p.records.waiting(ctx, p.cfg.lease())
	if err != nil {
		return err
	}
	for _, w := range waiting {
		if work[w.Batch] == nil {
			work[w.Batch] = &schedule.Work{Business: w.Business, Batch: w.Batch}
		}
		if work[w.Batch].Later == nil {
			work[w.Batch].Later = make(map[int]time.Time)
		}
		work[w.Batch].Later[w.Row] = w.At
	}
	businesses := make([]uuid.UUID, 0, len(work))
	for _, w := range work {
		businesses = append(businesses, w.Business)
	}
	weights, err := auth.Weights(ctx, p.records.pool, businesses)
	if err != nil {
		return err
	}
	list := make([]schedule.Work, 0, len(work))
	for _, w := range work {
		w.Weight = max(weights[w.Business], 1)
		list = append(list, *w)
	}
	if err := p.sched.Sync(ctx, list); err != nil {
		return err
	}
	p.metrics.Repairs.WithLabelValues("schedule_rebuilt").Inc()
	p.logger.WarnContext(ctx, "schedule rebuilt from PostgreSQL", "batches", len(list), "records_waiting", len(waiting))
	return nil
}

// waitingRecord is a pending record that may not be sent before At: it
// waits out a retry, or the lease of a call that may still be in flight.
type waitingRecord struct {
	Business uuid.UUID
	Batch    uuid.UUID
	Row      int
	At       time.Time
}

// waiting lists the pending records of active batches that may not be sent
// now, with when they may.
func (s records) waiting(ctx context.Context, lease time.Duration) ([]waitingRecord, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT b.business_id, r.batch_id, r.row_number,
			greatest(coalesce(r.retry_at, '-infinity'),
				CASE WHEN r.attempts > r.answered_attempts THEN r.last_attempt_at + $1::interval ELSE '-infinity' END)
		FROM batch_records r JOIN batches b ON b.id = r.batch_id
		WHERE r.status = 'pending' AND b.status IN ('pending', 'in_progress') AND NOT (`+fmt.Sprintf(eligibleSQL, "$1")+`)`, lease)
	if err != nil {
		return nil, fmt.Errorf("list records waiting: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[waitingRecord])
	if err != nil {
		return nil, fmt.Errorf("list records waiting: %w", err)
	}
	return list, nil
}

// lostCall is a pending record whose last call got no answer and whose
// lease is over: its worker died.
type lostCall struct {
	Business    uuid.UUID
	Batch       uuid.UUID
	Row         int
	BatchStatus string
}

// lostCalls lists the records whose call was lost with its worker (lease
// over, no answer, no retry to wait out), in batches not finished.
func (s records) lostCalls(ctx context.Context, lease time.Duration) ([]lostCall, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT b.business_id, r.batch_id, r.row_number, b.status
		FROM batch_records r JOIN batches b ON b.id = r.batch_id
		WHERE r.status = 'pending' AND r.attempts > r.answered_attempts AND r.last_attempt_at <= now() - $1::interval
		  AND (r.retry_at IS NULL OR r.retry_at <= now()) AND b.status IN ('pending', 'in_progress', 'cancelled')`, lease)
	if err != nil {
		return nil, fmt.Errorf("list lost calls: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[lostCall])
	if err != nil {
		return nil, fmt.Errorf("list lost calls: %w", err)
	}
	return list, nil
}

// putBack puts in the schedule the active batches that fell out of it
// with records to send (a pick whose claim a crash lost, an upload whose
// Redis was down).
func (p *Pipeline) putBack(ctx context.Context, batches []activeBatch) error {
	of := make(map[uuid.UUID]uuid.UUID, len(batches))
	for _, b := range batches {
		if b.Remaining > 0 {
			of[b.ID] = b.Business
		}
	}
	in, err := p.sched.Contains(ctx, of)
	if err != nil {
		return err
	}
	var errs []error
	for batch, business := range of {
		if in[batch] {
			continue
		}
		n, err := p.records.eligible(ctx, batch, p.cfg.lease())
		if err == nil && n > 0 {
			err = p.sched.Add(ctx, business, 0, batch, n)
			p.metrics.Repairs.WithLabelValues("batch_put_back").Inc()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// relaunch puts back in the schedule the records whose call was lost with
// its worker; a cancelled batch's such records are cancelled, their outcome
// unknown (the call may have imported the applicant).
func (p *Pipeline) relaunch(ctx context.Context) error {
	list, err := p.records.lostCalls(ctx, p.cfg.lease())
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range list {
		if r.BatchStatus == "cancelled" {
			errs = append(errs, p.finish(ctx, r.Batch, r.Row, nil, outcome{Status: "cancelled", ErrorCode: CodeOutcomeUnknown, ErrorMessage: msgOutcomeUnknown}))
			continue
		}
		p.metrics.Repairs.WithLabelValues("call_relaunched").Inc()
		errs = append(errs, p.sched.Later(ctx, r.Business, r.Batch, r.Row, time.Now()))
	}
	return errors.Join(errs...)
}

// refreshWeights gives the schedule the weights of the businesses with work,
// as PostgreSQL has them (set-business-weight may not have reached Redis).
func (p *Pipeline) refreshWeights(ctx context.Context, batches []activeBatch) error {
	businesses := make([]uuid.UUID, 0, len(batches))
	for _, b := range batches {
		businesses = append(businesses, b.Business)
	}
	weights, err := auth.Weights(ctx, p.records.pool, businesses)
	if err != nil {
		return err
	}
	var errs []error
	for business, w := range weights {
		errs = append(errs, p.sched.SetWeight(ctx, business, w))
	}
	return errors.Join(errs...)
}
