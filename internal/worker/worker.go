// Package worker builds the Asynq server and scheduler of kycbatch: the
// queues, the retry policy and the handlers of every task. cmd/worker and
// the dev server run it alike.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/metrics"
	"github.com/kycbatch/kycbatch/internal/ratelimit"
	"github.com/kycbatch/kycbatch/internal/reports"
	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/webhook"
)

// Queue weights: Sumsub imports get most of the workers, the small batch
// and maintenance tasks still run promptly.
var queues = map[string]int{
	ingest.QueueSumsub:      6,
	ingest.QueueBatches:     3,
	reports.QueueReports:    2,
	webhook.QueueWebhooks:   2,
	ingest.QueueMaintenance: 1,
}

// maxPermitWait is how long a record task waits for a rate-limit permit
// before handing its slot back and retrying later.
const maxPermitWait = 2 * time.Second

// Deps are what the worker needs.
type Deps struct {
	Logger *slog.Logger
	Pool   *pgxpool.Pool
	Redis  redis.UniversalClient
	Config config.Config
	// Sumsub imports applicants; nil: a client built from Config.Sumsub.
	Sumsub ingest.Importer
	// Files is where reports are written.
	Files *storage.Store
	// Metrics records Sumsub calls, rate-limit waits and record outcomes.
	Metrics *metrics.Metrics
}

// Worker is an Asynq server with the scheduler of the periodic tasks.
type Worker struct {
	server    *asynq.Server
	scheduler *asynq.Scheduler
	mux       *asynq.ServeMux
	queue     *asynq.Client
	logger    *slog.Logger
}

// New builds a worker; Run starts it.
func New(d Deps) (*Worker, error) {
	cfg := d.Config
	importer := d.Sumsub
	if importer == nil {
		importer = sumsub.New(sumsub.Config{
			BaseURL: cfg.Sumsub.BaseURL, AppToken: cfg.Sumsub.AppToken, SecretKey: cfg.Sumsub.SecretKey, Timeout: cfg.Sumsub.Timeout,
		})
	}
	queue := asynq.NewClientFromRedisClient(d.Redis)
	inspector := asynq.NewInspectorFromRedisClient(d.Redis)
	// Batches and reports that end raise webhook events; the deliverer sends them.
	notifier := webhook.NewNotifier(webhook.NewStore(d.Pool), queue, d.Logger)
	deliverer := webhook.NewDeliverer(webhook.NewStore(d.Pool), queue, inspector, cfg.Webhooks.RetryBase, cfg.Webhooks.AllowPrivateURLs, d.Logger)
	builder := reports.NewBuilder(reports.NewStore(d.Pool), d.Files, queue, inspector, d.Logger).WithNotifier(notifier, d.Files, cfg.ReportLinkTTL)
	processor := ingest.NewProcessor(
		ingest.NewStore(d.Pool),
		importer,
		ratelimit.New(d.Redis, "sumsub", cfg.Sumsub.RateLimit),
		queue,
		inspector,
		ingest.ProcessorConfig{
			Window: batchWindow(cfg), DefaultLevel: cfg.Sumsub.DefaultLevel, MaxWait: maxPermitWait,
			AttemptLease: maxPermitWait + cfg.Sumsub.Timeout + 5*time.Second,
		},
		d.Logger,
		d.Metrics,
	).WithNotifier(notifier)
	notifier.WithSources(map[string]webhook.Source{
		ingest.EventBatchCompleted: processor.BatchEvent, ingest.EventBatchFailed: processor.BatchEvent,
		ingest.EventBatchCancelled: processor.BatchEvent,
		reports.EventReportReady:   builder.ReportEvent, reports.EventReportFailed: builder.ReportEvent,
	})

	mux := asynq.NewServeMux()
	mux.Use(taskContext)
	mux.HandleFunc(ingest.TypeDispatchBatch, processor.HandleDispatch)
	mux.HandleFunc(ingest.TypeImportRecord, processor.HandleImportRecord)
	mux.HandleFunc(reports.TypeBuildReport, builder.HandleBuild)
	mux.HandleFunc(webhook.TypeDeliver, deliverer.HandleDeliver)
	// One reconciler for all the work PostgreSQL knows and Redis may have lost.
	mux.HandleFunc(ingest.TypeReconcile, func(ctx context.Context, _ *asynq.Task) error {
		return errors.Join(processor.Reconcile(ctx), builder.Reconcile(ctx), notifier.Recover(ctx), deliverer.Reconcile(ctx))
	})

	asynqLogger := logger{d.Logger.With("component", "asynq")}
	server := asynq.NewServerFromRedisClient(d.Redis, asynq.Config{
		Concurrency:     cfg.WorkerConcurrency,
		Queues:          queues,
		RetryDelayFunc:  retryDelay,
		IsFailure:       isFailure,
		ShutdownTimeout: cfg.ShutdownTimeout,
		// Tasks told to come back after a rate-limit wait are due within a
		// second: check for them often, not every 5 s (Asynq's default).
		DelayedTaskCheckInterval: 100 * time.Millisecond,
		// A worker with a free slot looks for new tasks this often (Asynq's
		// default is 1 s; it does not block on Redis): a record let into its
		// batch's window starts at once, for about 100 cheap Redis calls a
		// second per idle process.
		TaskCheckInterval: 10 * time.Millisecond,
		Logger:            asynqLogger,
		LogLevel:          asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			if isFailure(err) {
				d.Logger.WarnContext(ctx, "task failed", "type", t.Type(), "error", err)
			}
		}),
	})
	scheduler := asynq.NewSchedulerFromRedisClient(d.Redis, &asynq.SchedulerOpts{
		Logger: asynqLogger, LogLevel: asynq.WarnLevel,
		PostEnqueueFunc: func(_ *asynq.TaskInfo, err error) {
			if err != nil && !errors.Is(err, asynq.ErrDuplicateTask) {
				d.Logger.Warn("schedule the reconciler", "error", err)
			}
		},
	})
	// Every worker process registers the reconciler; Unique keeps about one
	// run per interval (Asynq's uniqueness lasts at least a second).
	spec := fmt.Sprintf("@every %s", cfg.ReconcileInterval)
	unique := max(cfg.ReconcileInterval*9/10, time.Second)
	if _, err := scheduler.Register(spec, ingest.NewReconcileTask(), asynq.Unique(unique)); err != nil {
		return nil, fmt.Errorf("schedule reconciler: %w", err)
	}
	return &Worker{server: server, scheduler: scheduler, mux: mux, queue: queue, logger: d.Logger}, nil
}

// batchWindow is how many records of one batch wait in the Sumsub queue at
// once: BATCH_WINDOW, but no more than half a second of the rate limit. Every
// record queued is one more that a batch uploaded later waits behind, so
// beside a large batch at 10/s a 10-record batch waits behind 5 records,
// not 20; half a second of work still keeps the limit busy.
func batchWindow(cfg config.Config) int {
	return max(1, min(cfg.BatchWindow, (cfg.Sumsub.RateLimit+1)/2))
}

// Run processes tasks until ctx ends, then lets running tasks finish for up to
// the shutdown timeout; unfinished ones go back to their queue.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.server.Start(w.mux); err != nil {
		return fmt.Errorf("start asynq server: %w", err)
	}
	if err := w.scheduler.Start(); err != nil {
		w.server.Shutdown()
		return fmt.Errorf("start scheduler: %w", err)
	}
	// Reconcile at once: work may have been lost while no worker ran.
	if _, err := w.queue.EnqueueContext(ctx, ingest.NewReconcileTask()); err != nil {
		w.logger.WarnContext(ctx, "enqueue start-up reconciliation", "error", err)
	}
	w.logger.InfoContext(ctx, "worker running", "queues", queues)
	<-ctx.Done()
	w.logger.Info("worker stopping: letting running tasks finish")
	w.scheduler.Shutdown()
	w.server.Shutdown()
	w.logger.Info("worker stopped")
	return nil
}

// taskContext puts the task's id and type on every log line of its handler.
func taskContext(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		return next.ProcessTask(logging.With(ctx, slog.String("task_id", id), slog.String("task_type", t.Type())), t)
	})
}

// isFailure: a task told to retry later (no permit soon enough, or its
// record's attempt in another task's hands) has not failed.
func isFailure(err error) bool {
	var limited *ingest.RetryLaterError
	return !errors.As(err, &limited)
}

// retryDelay honours the limiter's and Sumsub's Retry-After, else backs off
// exponentially (1 s, 2 s, 4 s … up to 5 min) with jitter so that retries
// of many records do not arrive together.
func retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var limited *ingest.RetryLaterError
	if errors.As(err, &limited) {
		return limited.RetryAfter + rand.N(50*time.Millisecond)
	}
	// A webhook delivery follows its own schedule (5 s, 5 min … 24 h).
	if d, ok := webhook.RetryDelay(err); ok {
		return d
	}
	var se *sumsub.Error
	if errors.As(err, &se) && se.RetryAfter > 0 {
		return se.RetryAfter + rand.N(250*time.Millisecond)
	}
	if se != nil && se.Kind == sumsub.RateLimited {
		// A 429 without Retry-After: Sumsub's window frees up within a
		// second, unless Sumsub is refusing for longer: 0.2 s doubling up to
		// 30 s, so a record's retries (Asynq's budget) span about ten minutes.
		backoff := min(200*time.Millisecond<<min(n, 8), 30*time.Second)
		return backoff/2 + rand.N(backoff/2+1)
	}
	backoff := min(time.Second<<min(n, 10), 5*time.Minute)
	return backoff/2 + rand.N(backoff/2+1)
}

// logger adapts slog to Asynq's logger.
type logger struct{ l *slog.Logger }

func (a logger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a logger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a logger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a logger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a logger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)) }
