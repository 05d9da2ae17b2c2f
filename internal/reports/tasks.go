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

	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
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

// NewBuildReportTask returns the task that builds report id; its task ID is "report:<id>".
func NewBuildReportTask(id string) *asynq.Task {
	payload, err := json.Marshal(BuildReportPayload{ReportID: id})
	if err != nil {
		panic(err) // a struct of a string always marshals
	}
	return asynq.NewTask(TypeBuildReport, payload,
		asynq.TaskID(taskID(id)),
		asynq.Queue(QueueReports),
		asynq.MaxRetry(maxBuildRetries),
		asynq.Timeout(10*time.Minute),
		asynq.Retention(24*time.Hour),
	)
}

func taskID(reportID string) string { return "report:" + reportID }

// FileStore streams report files to S3; *storage.Store is one.
type FileStore interface {
	Upload(ctx context.Context, key string, body io.Reader, contentType string) error
}

// Builder runs the report tasks.
type Builder struct {
	store     *Store
	files     FileStore
	queue     taskqueue.Enqueuer
	inspector taskqueue.Inspector
	logger    *slog.Logger
	// notifier raises report.ready and report.failed with the download
	// answer's data, whose links expire after linkTTL; nil: no events.
	notifier Notifier
	links    Linker
	linkTTL  time.Duration
}

// NewBuilder returns a Builder.
func NewBuilder(store *Store, files FileStore, queue taskqueue.Enqueuer, inspector taskqueue.Inspector, logger *slog.Logger) *Builder {
	return &Builder{store: store, files: files, queue: queue, inspector: inspector, logger: logger}
}

// HandleBuild streams the batch's records, in row order, through the CSV
// writer straight into a multipart upload: memory stays flat whatever the
// batch's size. The stats come from the same rows, so they match the file.
func (b *Builder) HandleBuild(ctx context.Context, t *asynq.Task) error {
	var p BuildReportPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("payload: %v: %w", err, asynq.SkipRetry)
	}
	ctx = logging.With(ctx, slog.String("report_id", p.ReportID))
	r, err := b.store.byID(ctx, p.ReportID)
	if errors.Is(err, errReportNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ok, err := b.store.markProcessing(ctx, r.ID)
	if err != nil || !ok {
		return err
	}
	key := fmt.Sprintf("reports/%s/%s/%s.csv", r.BusinessID, r.BatchID, r.ID)
	stats, err := b.build(ctx, r, key)
	if err != nil {
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, _ := asynq.GetMaxRetry(ctx)
		if retried >= maxRetry {
			b.logger.ErrorContext(ctx, "report failed", "error", err)
			if ferr := b.store.markFailed(context.WithoutCancel(ctx), r.ID, "the report could not be built"); ferr != nil {
				return ferr
			}
			b.notify(ctx, r.ID, EventReportFailed)
		}
		return err
	}
	if err := b.store.markBuilt(context.WithoutCancel(ctx), r.ID, key, stats); err != nil {
		return err
	}
	b.logger.InfoContext(ctx, "report built", "batch_id", r.BatchID, "records", stats.Pending+stats.Available+stats.Failed)
	b.notify(ctx, r.ID, EventReportReady)
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
			err = b.store.eachRecord(ctx, r.BatchID, func(rec record) error {
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
	ids, err := b.store.stuck(ctx, stuckAfter, 1000)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := taskqueue.EnqueueOnce(ctx, b.queue, b.inspector, NewBuildReportTask(id), QueueReports, taskID(id)); err != nil {
			return fmt.Errorf("re-enqueue report %s: %w", id, err)
		}
	}
	return nil
}
