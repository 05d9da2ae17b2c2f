package reports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

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
	pool      *pgxpool.Pool
	files     Files
	queue     taskqueue.Enqueuer
	inspector taskqueue.Inspector
	outbox    *event.Outbox
	logger    *slog.Logger
}

// NewBuilder returns a Builder.
func NewBuilder(pool *pgxpool.Pool, files Files, queue taskqueue.Enqueuer, inspector taskqueue.Inspector, outbox *event.Outbox, logger *slog.Logger) *Builder {
	return &Builder{pool: pool, files: files, queue: queue, inspector: inspector, outbox: outbox, logger: logger}
}

// HandleBuild builds a report: not necessarily the task's own, but the
// pending report of the business served least recently (the latest build
// start of its reports), so that one business's flood of reports takes
// turns with the others' instead of going first. Every report has a task,
// so every report is built; a task that finds nothing pending is done. The
// build streams the batch's records, in row order, through the CSV writer
// straight into a multipart upload: memory stays flat whatever the batch's
// size. The stats come from the same rows, so they match the file.
func (b *Builder) HandleBuild(ctx context.Context, t *asynq.Task) error {
	var p BuildReportPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("payload: %v: %w", err, asynq.SkipRetry)
	}
	r, err := b.claim(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx = logging.With(ctx, slog.String("report_id", r.ID))
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
		// Back in line, for this task's retry or another's turn.
		if _, perr := b.pool.Exec(context.WithoutCancel(ctx), `UPDATE reports SET status = 'pending', updated_at = now() WHERE id = $1 AND status = 'processing'`, r.ID); perr != nil {
			b.logger.WarnContext(ctx, "put a report back; the reconciler will", "error", perr)
		}
		return err
	}
	err = b.end(ctx, r, event.ReportReady, `status = 'success', stats_pending = $2, stats_available = $3, stats_failed = $4, object_key = $5`,
		stats.Pending, stats.Available, stats.Failed, key)
	if err != nil {
		return err
	}
	b.logger.InfoContext(ctx, "report built", "batch_id", r.BatchID, "records", stats.Pending+stats.Available+stats.Failed)
	return nil
}

// claim starts the build of the pending report whose business's latest
// build started longest ago (never: first), oldest first within one; a
// report processing for longer than stuckAfter (its worker died) counts as
// pending. ErrNotFound: none.
func (b *Builder) claim(ctx context.Context) (Report, error) {
	var id string
	err := b.pool.QueryRow(ctx, `
		UPDATE reports SET status = 'processing', build_started_at = now(), updated_at = now()
		WHERE id = (
			SELECT r.id FROM reports r
			WHERE r.status = 'pending' OR (r.status = 'processing' AND r.updated_at < now() - make_interval(secs => $1))
			ORDER BY (SELECT max(s.build_started_at) FROM reports s WHERE s.business_id = r.business_id) ASC NULLS FIRST, r.created_at
			LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING id`, stuckAfter.Seconds()).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Report{}, ErrNotFound
	}
	if err != nil {
		return Report{}, fmt.Errorf("claim a report to build: %w", err)
	}
	return get(ctx, b.pool, `id = $1`, id)
}

// end finishes report r (set: the columns to set, with args from $2 on)
// with its event, in one transaction, then announces the event.
func (b *Builder) end(ctx context.Context, r Report, t event.Type, set string, args ...any) error {
	ctx = context.WithoutCancel(ctx)
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE reports SET `+set+`, completed_at = now(), updated_at = now()
			WHERE id = $1 AND status IN ('pending', 'processing')`, append([]any{r.ID}, args...)...)
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
				case "succeeded":
					stats.Available++
				case "pending":
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

// stuckAfter is how long a report may stay unfinished before the reconciler
// makes sure Redis still holds its task.
const stuckAfter = time.Minute

// Reconcile re-enqueues the builds of reports that Redis lost.
func (b *Builder) Reconcile(ctx context.Context) error {
	rows, err := b.pool.Query(ctx, `
		SELECT id FROM reports WHERE status IN ('pending', 'processing') AND updated_at < now() - make_interval(secs => $1)
		ORDER BY created_at LIMIT 1000`, stuckAfter.Seconds())
	if err != nil {
		return fmt.Errorf("list unfinished reports: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list unfinished reports: %w", err)
	}
	for _, id := range ids {
		if err := taskqueue.EnqueueOnce(ctx, b.queue, b.inspector, NewBuildReportTask(ctx, id), QueueReports, taskID(id)); err != nil {
			return fmt.Errorf("re-enqueue report %s: %w", id, err)
		}
	}
	return nil
}
