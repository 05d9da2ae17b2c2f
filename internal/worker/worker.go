// Package worker builds the Asynq server and scheduler of kycbatch: the
// queues, the retry policy and the handlers of every task. cmd/worker and
// the dev server run it alike, on an app.App.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/contract"
	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/ratelimit"
	"github.com/kycbatch/kycbatch/internal/reports"
	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
	"github.com/kycbatch/kycbatch/internal/webhook"
)

// Queue weights: Sumsub imports get most of the workers, the small batch
// and maintenance tasks still run promptly.
var queues = map[string]int{
	ingest.QueueSumsub:      6,
	ingest.QueueBatches:     3,
	reports.QueueReports:    2,
	event.Queue:             2,
	webhook.QueueWebhooks:   2,
	ingest.QueueMaintenance: 1,
}

// maxPermitWait is how long a record task waits for a rate-limit permit
// before handing its slot back and retrying later.
const maxPermitWait = 2 * time.Second

// Worker is an Asynq server with the scheduler of the periodic tasks.
type Worker struct {
	server    *asynq.Server
	scheduler *asynq.Scheduler
	mux       *asynq.ServeMux
	queue     *asynq.Client
	logger    *slog.Logger
}

// New builds a worker on a's connections; Run starts it.
func New(a *app.App, cfg config.Worker) (*Worker, error) {
	importer := sumsub.New(sumsub.Config{
		BaseURL: cfg.Sumsub.BaseURL, AppToken: cfg.Sumsub.AppToken, SecretKey: cfg.Sumsub.SecretKey, Timeout: cfg.Sumsub.Timeout,
	})
	processor := ingest.NewProcessor(a.Pool, a.Files, importer, ratelimit.New(a.Redis, "sumsub", cfg.Sumsub.RateLimit),
		a.Queue, a.Inspector, a.Outbox,
		ingest.ProcessorConfig{
			Window: batchWindow(cfg), DefaultLevel: cfg.Sumsub.DefaultLevel, MaxWait: maxPermitWait,
			AttemptLease: maxPermitWait + cfg.Sumsub.Timeout + 5*time.Second,
		},
		a.Logger, a.Metrics)
	builder := reports.NewBuilder(a.Pool, a.Files, a.Queue, a.Inspector, a.Outbox, a.Logger)
	// Events carry the same bodies as the API's answers.
	dispatcher := webhook.NewDispatcher(a.Pool, contract.Events{Batches: a.Batches, Reports: a.Reports}, a.Queue, a.Inspector, a.Logger)
	deliverer := webhook.NewDeliverer(a.Pool, a.Queue, a.Inspector, cfg.Webhooks.RetryBase, cfg.Webhooks.AllowPrivateURLs, a.Logger)

	mux := asynq.NewServeMux()
	mux.Use(taskContext)
	mux.HandleFunc(ingest.TypeDispatchBatch, processor.HandleDispatch)
	mux.HandleFunc(ingest.TypeImportRecord, processor.HandleImportRecord)
	mux.HandleFunc(reports.TypeBuildReport, builder.HandleBuild)
	mux.HandleFunc(event.TypeDispatch, dispatcher.HandleDispatch)
	mux.HandleFunc(webhook.TypeDeliver, deliverer.HandleDeliver)
	// One reconciler for all the work PostgreSQL knows and Redis may have lost.
	mux.HandleFunc(ingest.TypeReconcile, func(ctx context.Context, _ *asynq.Task) error {
		return errors.Join(processor.Reconcile(ctx), builder.Reconcile(ctx), dispatcher.Reconcile(ctx), deliverer.Reconcile(ctx))
	})

	asynqLogger := logger{a.Logger.With("component", "asynq")}
	server := asynq.NewServerFromRedisClient(a.Redis, asynq.Config{
		Concurrency:     cfg.Concurrency,
		Queues:          queues,
		RetryDelayFunc:  retryDelay,
		IsFailure:       taskqueue.IsFailure,
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
			if taskqueue.IsFailure(err) {
				a.Logger.WarnContext(ctx, "task failed", "type", t.Type(), "error", err)
			}
		}),
	})
	scheduler := asynq.NewSchedulerFromRedisClient(a.Redis, &asynq.SchedulerOpts{
		Logger: asynqLogger, LogLevel: asynq.WarnLevel,
		PostEnqueueFunc: func(_ *asynq.TaskInfo, err error) {
			if err != nil && !errors.Is(err, asynq.ErrDuplicateTask) {
				a.Logger.Warn("schedule the reconciler", "error", err)
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
	return &Worker{server: server, scheduler: scheduler, mux: mux, queue: a.Queue, logger: a.Logger}, nil
}

// batchWindow is how many records of one batch wait in the Sumsub queue at
// once: BATCH_WINDOW, but no more than half a second of the rate limit. Every
// record queued is one more that a batch uploaded later waits behind, so
// beside a large batch at 10/s a 10-record batch waits behind 5 records,
// not 20; half a second of work still keeps the limit busy.
func batchWindow(cfg config.Worker) int {
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

// retryDelay is when a task runs again: after the delay its handler asked
// for (taskqueue.RetryIn, taskqueue.Snooze), else after an exponential
// backoff (1 s, 2 s, 4 s … up to 5 min) with jitter, so that retries of
// many tasks do not arrive together.
func retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	if d, ok := taskqueue.Delay(err); ok {
		return d
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
