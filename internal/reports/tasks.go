package reports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
	"github.com/kycbatch/kycbatch/internal/tracing"
)

// TypeBuildReport builds one report; QueueReports is its queue.
const (
	TypeBuildReport = "report:build"
	QueueReports    = "reports"
)

// maxBuildRetries is how often a failed build is retried before the report fails.
const maxBuildRetries = 5

// BuildReportPayload is the payload of TypeBuildReport.
type BuildReportPayload struct {
	ReportID string `json:"reportId"`
}

// NewBuildReportTask returns the task that builds report id; its task ID is
// "report:<id>". Its headers carry the trace of ctx.
func NewBuildReportTask(ctx context.Context, id string) *asynq.Task {
	payload, err := json.Marshal(BuildReportPayload{ReportID: id})
	if err != nil {
		panic(err) // a struct of a string always marshals
	}
	return tracing.NewTask(ctx, TypeBuildReport, payload,
		asynq.TaskID(taskID(id)),
		asynq.Queue(QueueReports),
		asynq.MaxRetry(maxBuildRetries),
		asynq.Timeout(10*time.Minute),
		asynq.Retention(24*time.Hour),
	)
}

func taskID(reportID string) string { return "report:" + reportID }

// Builder runs the report tasks.
type Builder struct {
	feeder
	files     Files
	inspector taskqueue.Inspector
	outbox    *event.Outbox
	logger    *slog.Logger
}

// BuilderConfig is what a Builder is made of.
type BuilderConfig struct {
	Pool *pgxpool.Pool
	// Files stores the reports' CSVs.
	Files Files
	// Queue enqueues the build tasks; Inspector finds them again.
	Queue     taskqueue.Enqueuer
	Inspector taskqueue.Inspector
	// Outbox announces report.ready and report.failed.
	Outbox *event.Outbox
	Logger *slog.Logger
}

// NewBuilder returns a Builder.
func NewBuilder(c BuilderConfig) *Builder {
	return &Builder{feeder: feeder{pool: c.Pool, queue: c.Queue}, files: c.Files, inspector: c.Inspector, outbox: c.Outbox, logger: c.Logger}
}

// builtResult is the Result of a task that built its report, shown in the
// dashboard beside its payload.
type builtResult struct {
	ReportID string    `json:"reportId"`
	BatchID  uuid.UUID `json:"batchId"`
	Records  int       `json:"records"`
}

// skippedResult is the Result of a task that found its report neither
// queued nor processing, and so built nothing.
type skippedResult struct {
	ReportID string `json:"reportId"`
	Skipped  string `json:"skipped"`
}

// HandleBuild builds the report its payload names, whose turn the feeder
// gave when it enqueued the task. The build streams the batch's records, in
// row order, through the CSV writer straight into a multipart upload:
// memory stays flat whatever the batch's size. The stats come from the same
// rows, so they match the file. A failed build keeps the report queued, in
// its place, while the task waits for its retry; after the last retry the
// report fails. However it ends, the task then feeds the next builds.
func (b *Builder) HandleBuild(ctx context.Context, t *asynq.Task) error {
	var p BuildReportPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("payload: %v: %w", err, asynq.SkipRetry)
	}
	ctx = logging.With(ctx, slog.String("report_id", p.ReportID))
	defer func() {
		if err := b.feed(context.WithoutCancel(ctx)); err != nil {
			b.logger.WarnContext(ctx, "feed report builds; the next build or the reconciler will", "error", err)
		}
	}()
	r, err := b.start(ctx, p.ReportID)
	var notQueued notQueuedError
	if errors.As(err, &notQueued) {
		b.logger.InfoContext(ctx, "nothing to build", "reason", notQueued.Error())
		b.writeResult(ctx, t, skippedResult{ReportID: p.ReportID, Skipped: notQueued.Error()})
		return nil
	}
	if err != nil {
		return err
	}
	key := fmt.Sprintf("reports/%s/%s/%s.csv", r.BusinessID, r.BatchID, r.ID)
	stats, err := b.build(ctx, r, key)
	if err != nil {
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, _ := asynq.GetMaxRetry(ctx)
		if retried >= maxRetry {
			b.logger.ErrorContext(ctx, "report failed", "error", err)
			if ferr := b.end(ctx, r, event.ReportFailed, `status = 'failed', failure_reason = 'the report could not be built'`); ferr != nil {
				return ferr
			}
			return err
		}
		// Still its turn: queued, it keeps its place in the window while
		// its task waits for the retry.
		if _, perr := b.pool.Exec(context.WithoutCancel(ctx), `UPDATE reports SET status = 'queued', updated_at = now() WHERE id = $1 AND status = 'processing'`, r.ID); perr != nil {
			b.logger.WarnContext(ctx, "put a report back in the queue; its retry will", "error", perr)
		}
		return err
	}
	err = b.end(ctx, r, event.ReportReady, `status = 'success', stats_pending = $2, stats_available = $3, stats_failed = $4, object_key = $5`,
		stats.Pending, stats.Available, stats.Failed, key)
	if err != nil {
		return err
	}
	records := stats.Pending + stats.Available + stats.Failed
	b.logger.InfoContext(ctx, "report built", "batch_id", r.BatchID, "records", records)
	b.writeResult(ctx, t, builtResult{ReportID: r.ID, BatchID: r.BatchID, Records: records})
	return nil
}

// writeResult stores v as t's Result. The task's work is done by then: a
// Result that could not be written is logged, and the task succeeds all the
// same (a retry would find nothing to do).
func (b *Builder) writeResult(ctx context.Context, t *asynq.Task, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // a struct of strings and numbers always marshals
	}
	if _, err := t.ResultWriter().Write(body); err != nil {
		b.logger.WarnContext(ctx, "write the task's result", "error", err)
	}
}

// notQueuedError is a task's report found neither queued nor processing:
// built or failed already (a task enqueued again), or unknown (deleted with
// its batch).
type notQueuedError struct{ status string }

func (e notQueuedError) Error() string {
	if e.status == "" {
		return "no such report"
	}
	return "the report is " + e.status + ", not queued"
}

// start moves report id from queued to processing and returns it. A report
// already processing is this task's own, run again after its worker died or
// Redis lost it mid-build. notQueuedError: any other status, or none.
func (b *Builder) start(ctx context.Context, id string) (Report, error) {
	r := Report{ID: id, Status: "processing"}
	err := b.pool.QueryRow(ctx, `
		UPDATE reports SET status = 'processing', build_started_at = now(), updated_at = now()
		WHERE id = $1 AND status IN ('queued', 'processing')
		RETURNING business_id, batch_id`, id).Scan(&r.BusinessID, &r.BatchID)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Report{}, fmt.Errorf("start report %s: %w", id, err)
	}
	var status string
	err = b.pool.QueryRow(ctx, `SELECT status FROM reports WHERE id = $1`, id).Scan(&status)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Report{}, fmt.Errorf("start report %s: %w", id, err)
	}
	return Report{}, notQueuedError{status}
}

// end finishes report r (set: the columns to set, with args from $2 on)
// with its event, in one transaction, then announces the event.
func (b *Builder) end(ctx context.Context, r Report, t event.Type, set string, args ...any) error {
	ctx = context.WithoutCancel(ctx)
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE reports SET `+set+`, completed_at = now(), updated_at = now()
			WHERE id = $1 AND status IN ('queued', 'processing')`, append([]any{r.ID}, args...)...)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return event.Record(ctx, tx, r.BusinessID, t, r.ID)
	})
	if err != nil {
		return fmt.Errorf("finish report %s: %w", r.ID, err)
	}
	b.outbox.Announce(ctx, event.Key{Type: t, Subject: r.ID})
	return nil
}

// build writes the report CSV to key and returns its stats.
func (b *Builder) build(ctx context.Context, r Report, key string) (Stats, error) {
	pr, pw := io.Pipe()
	var stats Stats
	go func() {
		pw.CloseWithError(func() error {
			w, err := newCSVWriter(pw)
			if err != nil {
				return err
			}
			err = ingest.EachRecord(ctx, b.pool, r.BatchID, func(rec ingest.Result) error {
				switch rec.Status {
				case ingest.RecordSucceeded:
					stats.Available++
				case ingest.RecordPending:
					stats.Pending++
				default:
					stats.Failed++
				}
				return w.write(rec)
			})
			if err != nil {
				return err
			}
			return w.flush()
		}())
	}()
	err := b.files.Upload(ctx, key, pr, "text/csv; charset=utf-8")
	pr.CloseWithError(err) // stops the writer if the upload gave up first
	if err != nil {
		return Stats{}, err
	}
	return stats, nil
}

// stuckAfter is how long a report may stay queued or processing, unchanged,
// before the reconciler makes sure Redis still holds its task.
const stuckAfter = time.Minute

// Reconcile re-enqueues the build tasks that Redis lost (a flush, a task
// deleted from the dashboard) of reports queued or processing, then feeds:
// reports initiated while no feed could run get their turn.
func (b *Builder) Reconcile(ctx context.Context) error {
	rows, err := b.pool.Query(ctx, `
		SELECT id FROM reports WHERE status IN ('queued', 'processing') AND updated_at < now() - make_interval(secs => $1)
		ORDER BY updated_at LIMIT 1000`, stuckAfter.Seconds())
	if err != nil {
		return fmt.Errorf("list queued reports: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list queued reports: %w", err)
	}
	for _, id := range ids {
		if err := taskqueue.EnqueueOnce(ctx, b.queue, b.inspector, NewBuildReportTask(ctx, id), QueueReports, taskID(id)); err != nil {
			return fmt.Errorf("re-enqueue report %s: %w", id, err)
		}
	}
	return b.feed(ctx)
}
