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
	"github.com/kycbatch/kycbatch/internal/redisconn"
	"github.com/kycbatch/kycbatch/internal/reports"
	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
	"github.com/kycbatch/kycbatch/internal/tracing"
	"github.com/kycbatch/kycbatch/internal/webhook"
)

// Queue weights of the Asynq tasks. Records are not Asynq tasks: the
// pipeline sends them (ingest.Pipeline).
var queues = map[string]int{
	reports.QueueReports:    2,
	event.Queue:             2,
	webhook.QueueWebhooks:   2,
	ingest.QueueMaintenance: 1,
}

// Worker is the pipeline that sends records to Sumsub, and an Asynq server,
// with the scheduler of the periodic tasks, for everything else.
type Worker struct {
	pipeline  *ingest.Pipeline
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
	pipeline := ingest.NewPipeline(a.Pool, a.Files, importer, ratelimit.New(a.Redis, "sumsub", cfg.Sumsub.RateLimit),
		a.Schedule, a.Circuit, a.Outbox,
		ingest.PipelineConfig{
			Rate: cfg.Sumsub.RateLimit, Concurrency: cfg.Concurrency, DefaultLevel: cfg.Sumsub.DefaultLevel,
			CallTimeout: cfg.Sumsub.Timeout, ShutdownTimeout: cfg.ShutdownTimeout, UploadRetention: cfg.UploadRetention,
		},
		a.Logger, a.Metrics)
	builder := reports.NewBuilder(a.Pool, a.Files, a.Queue, a.Inspector, a.Outbox, a.Logger)
	// Events carry the same bodies as the API's answers.
	dispatcher := webhook.NewDispatcher(a.Pool, contract.Events{Batches: a.Batches, Reports: a.Reports}, a.Queue, a.Inspector, a.Logger)
	deliverer := webhook.NewDeliverer(a.Pool, a.Queue, a.Inspector, cfg.Webhooks.RetryBase, cfg.Webhooks.AllowPrivateURLs, a.Logger, a.Metrics)
	a.Metrics.SumsubRateLimit.Set(float64(cfg.Sumsub.RateLimit))

	mux := asynq.NewServeMux()
	mux.Use(tracing.TaskSpans, taskContext)
	mux.HandleFunc(reports.TypeBuildReport, builder.HandleBuild)
	mux.HandleFunc(event.TypeDispatch, dispatcher.HandleDispatch)
	mux.HandleFunc(webhook.TypeDeliver, deliverer.HandleDeliver)
	// One reconciler for all the work PostgreSQL knows and Redis may have lost.
	mux.HandleFunc(ingest.TypeReconcile, func(ctx context.Context, _ *asynq.Task) error {
		return errors.Join(pipeline.Reconcile(ctx), builder.Reconcile(ctx), dispatcher.Reconcile(ctx), deliverer.Reconcile(ctx))
	})

	asynqLogger := logger{a.Logger.With("component", "asynq")}
	server := asynq.NewServerFromRedisClient(a.Redis, asynq.Config{
		Concurrency:     cfg.Concurrency,
		Queues:          queues,
		RetryDelayFunc:  retryDelay,
		IsFailure:       taskqueue.IsFailure,
		ShutdownTimeout: cfg.ShutdownTimeout,
		// Retries and scheduled deliveries are moved to their queue at two
		// scripts per queue each check: at most every first webhook retry's
		// wait, between 1 s and Asynq's default 5 s (5 s in production, the
		// first retry's wait). New tasks are looked for every second
		// (Asynq's default: it polls, a script per queue): together, what
		// an idle worker costs Redis.
		DelayedTaskCheckInterval: min(max(cfg.Webhooks.RetryBase, time.Second), 5*time.Second),
		Logger:                   asynqLogger,
		LogLevel:                 asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			if taskqueue.IsFailure(err) {
				a.Logger.WarnContext(ctx, "task failed", "type", t.Type(), "error", err)
			}
		}),
	})
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
	if _, err := scheduler.Register(spec, ingest.NewReconcileTask(), asynq.Unique(unique)); err != nil {
		return nil, fmt.Errorf("schedule reconciler: %w", err)
	}
	return &Worker{pipeline: pipeline, server: server, scheduler: scheduler, mux: mux, queue: a.Queue, logger: a.Logger}, nil
}

// Run sends records and processes tasks until ctx ends, then lets the
// Sumsub calls in flight and the running tasks finish for up to the
// shutdown timeout; unfinished tasks go back to their queue.
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
	err := w.pipeline.Run(ctx)
	w.logger.Info("worker stopping: letting running tasks finish")
	w.scheduler.Shutdown()
	w.server.Shutdown()
	w.logger.Info("worker stopped")
	return err
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
