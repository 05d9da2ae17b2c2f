// Package worker builds the Asynq servers and scheduler of kycbatch: the
// queues, the retry policy and the handlers of every task, and the feeder
// that moves records into the sumsub queue. cmd/worker and the dev server
// run it alike, on an app.App.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/contract"
	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/imports"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/ratelimit"
	"github.com/kycbatch/kycbatch/internal/redisconn"
	"github.com/kycbatch/kycbatch/internal/rediskey"
	"github.com/kycbatch/kycbatch/internal/reports"
	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
	"github.com/kycbatch/kycbatch/internal/tracing"
	"github.com/kycbatch/kycbatch/internal/webhook"
)

// TypeReconcile re-creates from PostgreSQL the work Redis lost; Asynq's
// scheduler runs it every RECONCILE_INTERVAL on QueueMaintenance.
const (
	TypeReconcile    = "maintenance:reconcile"
	QueueMaintenance = "maintenance"
)

// queues are the weights of the queues of every task but the records'
// (which have a server of their own: see New).
var queues = map[string]int{
	reports.QueueReports:  2,
	event.Queue:           2,
	webhook.QueueWebhooks: 2,
	QueueMaintenance:      1,
}

// Queues are every queue the service uses: registered with Asynq from the
// first start (and again after Redis lost them), so that the dashboard lists
// them all before their first task.
var Queues = []string{imports.Queue, reports.QueueReports, event.Queue, webhook.QueueWebhooks, QueueMaintenance}

// NewReconcileTask returns the periodic reconciler task.
func NewReconcileTask() *asynq.Task {
	return asynq.NewTask(TypeReconcile, nil,
		asynq.Queue(QueueMaintenance),
		asynq.MaxRetry(0), // the next run comes soon anyway
		asynq.Timeout(5*time.Minute),
		asynq.Retention(time.Hour),
	)
}

// recordTaskCheck is how often the records' server looks for a pending
// record task when it has none (Asynq sleeps half to one and a half times
// this between looks): a task fed into an idle queue waits up to 750 ms,
// less than the second of permits the window holds, so the rate never
// waits for it. Asynq's default (1 s) could leave the window empty for half
// a second; this costs an idle worker two Redis commands a second.
const recordTaskCheck = 500 * time.Millisecond

// Worker runs two Asynq servers on the worker process: one for the record
// tasks (queue sumsub), whose concurrency is the Sumsub calls a process may
// have in flight, and one for every other task, so that neither kind can
// take the other's workers; the feeder of the sumsub queue; and the
// scheduler of the periodic reconciler.
type Worker struct {
	records   *imports.Records
	server    *asynq.Server
	recordSrv *asynq.Server
	scheduler *asynq.Scheduler
	mux       *asynq.ServeMux
	recordMux *asynq.ServeMux
	app       *app.App
}

// New builds a worker on a's connections; Run starts it.
func New(a *app.App, cfg config.Worker) (*Worker, error) {
	records := imports.New(imports.Config{
		Pool: a.Pool, Redis: a.Redis, Queue: a.Queue, Inspector: a.Inspector,
		Sumsub: sumsub.New(sumsub.Config{
			BaseURL: cfg.Sumsub.BaseURL, AppToken: cfg.Sumsub.AppToken, SecretKey: cfg.Sumsub.SecretKey, Timeout: cfg.Sumsub.Timeout,
		}),
		Limiter:  ratelimit.New(a.Redis, rediskey.SumsubRate, cfg.Sumsub.RateLimit),
		Schedule: a.Schedule, Circuit: a.Circuit, Outbox: a.Outbox, Logger: a.Logger, Metrics: a.Metrics,
		Rate: cfg.Sumsub.RateLimit, Concurrency: cfg.Concurrency, DefaultLevel: cfg.Sumsub.DefaultLevel,
		CallTimeout: cfg.Sumsub.Timeout, TaskRetention: cfg.RecordTaskRetention,
	})
	builder := reports.NewBuilder(reports.BuilderConfig{
		Pool: a.Pool, Files: a.Files, Queue: a.Queue, Inspector: a.Inspector, Outbox: a.Outbox, Logger: a.Logger,
	})
	// Events carry the same bodies as the API's answers.
	dispatcher := webhook.NewDispatcher(a.Pool, contract.Events{Batches: a.Batches, Reports: a.Reports}, a.Queue, a.Inspector, a.Logger)
	deliverer := webhook.NewDeliverer(webhook.DelivererConfig{
		Pool: a.Pool, Queue: a.Queue, Inspector: a.Inspector, RetryBase: cfg.Webhooks.RetryBase,
		AllowPrivate: cfg.Webhooks.AllowPrivateURLs, Logger: a.Logger, Metrics: a.Metrics,
	})
	a.Metrics.SumsubRateLimit.Set(float64(cfg.Sumsub.RateLimit))

	mux := asynq.NewServeMux()
	mux.Use(tracing.TaskSpans, taskContext)
	mux.HandleFunc(reports.TypeBuildReport, builder.HandleBuild)
	mux.HandleFunc(event.TypeDispatch, dispatcher.HandleDispatch)
	mux.HandleFunc(webhook.TypeDeliver, deliverer.HandleDeliver)
	// One reconciler for all the work PostgreSQL knows and Redis may have lost.
	mux.HandleFunc(TypeReconcile, func(ctx context.Context, _ *asynq.Task) error {
		return errors.Join(registerQueues(ctx, a), records.Reconcile(ctx), sweepUploads(ctx, a, cfg),
			builder.Reconcile(ctx), dispatcher.Reconcile(ctx), deliverer.Reconcile(ctx))
	})
	recordMux := asynq.NewServeMux()
	recordMux.Use(tracing.TaskSpans, taskContext)
	recordMux.Handle(imports.TypeImport, records)

	asynqLogger := logger{a.Logger.With("component", "asynq")}
	base := asynq.Config{
		RetryDelayFunc:  retryDelay,
		IsFailure:       taskqueue.IsFailure,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Logger:          asynqLogger,
		LogLevel:        asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			if taskqueue.IsFailure(err) {
				a.Logger.WarnContext(ctx, "task failed", "type", t.Type(), "error", err)
			}
		}),
	}
	other := base
	other.Concurrency, other.Queues = cfg.Concurrency, queues
	// Retries and scheduled deliveries are moved to their queue at two
	// scripts per queue each check: at most every first webhook retry's
	// wait, between 1 s and Asynq's default 5 s (5 s in production, the
	// first retry's wait). New tasks are looked for every second
	// (Asynq's default: it polls, a script per queue).
	other.DelayedTaskCheckInterval = min(max(cfg.Webhooks.RetryBase, time.Second), 5*time.Second)
	recordCfg := base
	recordCfg.Concurrency, recordCfg.Queues = cfg.Concurrency, map[string]int{imports.Queue: 1}
	recordCfg.TaskCheckInterval = recordTaskCheck
	// A record back from a retry or a snooze goes within 2 s of its time.
	recordCfg.DelayedTaskCheckInterval = 2 * time.Second
	// Finished record tasks are many (the rate's worth every second): the
	// expired ones are deleted 100 at a time every 4 s, two and a half
	// times Sumsub's 10/s.
	recordCfg.JanitorInterval = 4 * time.Second
	// The scheduler gets a connection of its own: asynq's scheduler closes
	// its client when it stops, and logs an error when that is shared.
	redisOpt, err := redisconn.Parse(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	scheduler := asynq.NewScheduler(redisOpt, &asynq.SchedulerOpts{
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
	if _, err := scheduler.Register(spec, NewReconcileTask(), asynq.Unique(unique)); err != nil {
		return nil, fmt.Errorf("schedule reconciler: %w", err)
	}
	return &Worker{
		records: records, server: asynq.NewServerFromRedisClient(a.Redis, other), recordSrv: asynq.NewServerFromRedisClient(a.Redis, recordCfg),
		scheduler: scheduler, mux: mux, recordMux: recordMux, app: a,
	}, nil
}

// Run feeds records and processes tasks until ctx ends, then lets the
// running tasks (the Sumsub calls in flight among them) finish for up to
// the shutdown timeout; unfinished tasks go back to their queue.
func (w *Worker) Run(ctx context.Context) error {
	logger := w.app.Logger
	if err := registerQueues(ctx, w.app); err != nil {
		logger.WarnContext(ctx, "register the queues; the reconciler will", "error", err)
	}
	if err := w.recordSrv.Start(w.recordMux); err != nil {
		return fmt.Errorf("start the records' asynq server: %w", err)
	}
	if err := w.server.Start(w.mux); err != nil {
		w.recordSrv.Shutdown()
		return fmt.Errorf("start asynq server: %w", err)
	}
	if err := w.scheduler.Start(); err != nil {
		w.server.Shutdown()
		w.recordSrv.Shutdown()
		return fmt.Errorf("start scheduler: %w", err)
	}
	// Reconcile at once: work may have been lost while no worker ran.
	if _, err := w.app.Queue.EnqueueContext(ctx, NewReconcileTask()); err != nil {
		logger.WarnContext(ctx, "enqueue start-up reconciliation", "error", err)
	}
	logger.InfoContext(ctx, "worker running", "queues", Queues)
	w.records.Feed(ctx)
	logger.Info("worker stopping: letting running tasks finish")
	w.scheduler.Shutdown()
	w.server.Shutdown()
	w.recordSrv.Shutdown()
	logger.Info("worker stopped")
	return nil
}

// registerQueues lists every queue in Asynq's registry, as a task enqueued
// in it would: the dashboard and the queue metrics show them from the
// first start, and again after Redis lost them.
func registerQueues(ctx context.Context, a *app.App) error {
	names := make([]any, len(Queues))
	for i, q := range Queues {
		names[i] = q
	}
	if err := a.Redis.SAdd(ctx, rediskey.AsynqQueues, names...).Err(); err != nil {
		return fmt.Errorf("register queues: %w", err)
	}
	return nil
}

// sweepUploads deletes the raw files of uploads that were never stored,
// and those of batches final for longer than UPLOAD_RETENTION.
func sweepUploads(ctx context.Context, a *app.App, cfg config.Worker) error {
	swept, err := ingest.SweepUploads(ctx, a.Pool, a.Files)
	if swept > 0 {
		a.Logger.WarnContext(ctx, "deleted the raw files of uploads that were never stored", "files", swept)
	}
	expired, eerr := ingest.ExpireUploads(ctx, a.Pool, a.Files, cfg.UploadRetention)
	if expired > 0 {
		a.Logger.InfoContext(ctx, "deleted the raw uploads of batches final for longer than UPLOAD_RETENTION", "files", expired)
	}
	return errors.Join(err, eerr)
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
	return taskqueue.Backoff(n+1, time.Second, 5*time.Minute)
}

// logger adapts slog to Asynq's logger.
type logger struct{ l *slog.Logger }

func (a logger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a logger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a logger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a logger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a logger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)) }
