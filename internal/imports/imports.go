// Package imports is the workers' side of batches: it sends every record to
// Sumsub as an Asynq task (record:import, queue sumsub), in the order of the
// fair schedule. A feeder in each worker moves the records the schedule
// picks into the queue, keeping only a short window there; the task's
// handler claims its record, takes a permit of the global rate limit, calls
// Sumsub and stores the outcome; the reconciler feeds again what Redis lost.
// PostgreSQL stays the truth: the records' state is ingest's (it owns the
// tables), which this package drives through ingest's functions.
package imports

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/metrics"
	"github.com/kycbatch/kycbatch/internal/schedule"
	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/sumsub/circuit"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
	"github.com/kycbatch/kycbatch/internal/tracing"
)

// TypeImport imports one record's applicant; Queue is its queue.
const (
	TypeImport = "record:import"
	Queue      = schedule.Queue
)

// MaxAttempts is how many Sumsub calls a record gets before it fails with the last error.
const MaxAttempts = 8

// maxRefusals is how many 429s a record takes before it fails with
// SUMSUB_RATE_LIMITED: with their backoff (1 s doubling to 30 s) about ten
// minutes of Sumsub refusing.
const maxRefusals = 24

// maxTaskRetries is the Asynq retry budget of a record's task. A record's
// own retries (a 5xx, a timeout, a 429) are counted in PostgreSQL and end
// the record long before it; what is left is for internal failures (the
// database down), which archive the task once they used it up.
const maxTaskRetries = MaxAttempts + maxRefusals + 10

// Payload is a record task's payload: which record, of which batch and
// business, and the feed that made the task. Never a share token: the
// handler reads the token from PostgreSQL.
type Payload struct {
	BatchID    string `json:"batchId"`
	Row        int    `json:"row"`
	BusinessID string `json:"businessId"`
	Feed       int    `json:"feed"`
}

// TaskID names the task of a record's feed: record:<batch>:<row>:<feed>.
func TaskID(ref ingest.Ref) string {
	return fmt.Sprintf("record:%s:%d:%d", ref.Batch, ref.Row, ref.Feed)
}

// Limiter hands out permits for Sumsub calls; *ratelimit.Limiter is one,
// shared by every worker process.
type Limiter interface {
	Wait(ctx context.Context, maxWait time.Duration) error
}

// Importer imports an applicant from a share token, and probes Sumsub
// while the circuit is open; *sumsub.Client is one. The handler needs
// nothing else of Sumsub.
type Importer interface {
	ReuseApplicant(ctx context.Context, shareToken, levelName string) (sumsub.Applicant, error)
	Probe(ctx context.Context) error
}

// Inspector tells whether Redis still holds a task; *asynq.Inspector is one.
type Inspector interface {
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
}

// Config is what Records is made of.
type Config struct {
	Pool  *pgxpool.Pool
	Redis redis.UniversalClient
	// Queue enqueues the record tasks; Inspector finds them again.
	Queue     taskqueue.Enqueuer
	Inspector Inspector
	Sumsub    Importer
	Limiter   Limiter
	Schedule  *schedule.Scheduler
	Circuit   *circuit.Breaker
	Outbox    *event.Outbox
	Logger    *slog.Logger
	Metrics   *metrics.Metrics

	// Rate is Sumsub's rate limit, requests per second for every process:
	// it sizes the window of tasks in the queue.
	Rate int
	// Concurrency is how many record tasks one process runs at once.
	Concurrency int
	// DefaultLevel is the level of records that name none; empty: Sumsub's default.
	DefaultLevel string
	// CallTimeout bounds one Sumsub call (the client's timeout).
	CallTimeout time.Duration
	// TaskRetention is how long a finished record task stays in the
	// dashboard's Completed list, with its result (RECORD_TASK_RETENTION).
	TaskRetention time.Duration
}

// maxPermitWait is how long a task waits for its permit before it is
// snoozed: the other processes have the permits, or Redis is down.
const maxPermitWait = 5 * time.Second

// lease is how long an attempt may be in flight: its permit wait, the call
// and a margin. A record whose last attempt is unanswered and younger than
// this is not sent again, so that two calls for one token never race; once
// it is over, the call is taken for lost (its worker died) and the record
// may be sent again.
func (c Config) lease() time.Duration {
	return maxPermitWait + c.CallTimeout + 5*time.Second
}

// Records feeds the records to the queue, runs their tasks and reconciles
// them with what PostgreSQL holds.
type Records struct {
	cfg Config
	// claims claims the records of the tasks that run at once together;
	// outcomes stores the outcomes that end at once together.
	claims   group[ingest.Ref, ingest.Claim]
	outcomes group[ingest.Final, ingest.Stored]
	// pause tells whether ops paused the queue.
	pause *pauseWatch
	// done wakes the feeder when a task of this process ends: the window
	// has room again.
	done *signal
	// cursors holds, for each batch, the last row this process fed: its
	// next feed looks after it (see ingest.Feed).
	cursors sync.Map
	// latency is the recent Sumsub call latency, which sizes the window.
	latency ewma
	// unreachable is set while the feeder cannot reach Redis (its
	// goroutine alone reads and writes it).
	unreachable bool
}

// New returns the Records of a worker process.
func New(cfg Config) *Records {
	metrics.Start(cfg.Metrics.SumsubCalls, CallOutcomes...)
	metrics.Start(cfg.Metrics.Records, ingest.RecordSucceeded, ingest.RecordFailed, ingest.RecordCancelled)
	metrics.Start(cfg.Metrics.Repairs, Repairs...)
	r := &Records{cfg: cfg, pause: newPauseWatch(cfg.Redis, Queue), done: newSignal()}
	r.claims.run = func(ctx context.Context, refs []ingest.Ref) ([]ingest.Claim, error) {
		// One task's end (its deadline, a shutdown) must not fail the others' claims.
		return ingest.ClaimAll(context.WithoutCancel(ctx), cfg.Pool, refs, cfg.lease())
	}
	r.outcomes.run = func(ctx context.Context, list []ingest.Final) ([]ingest.Stored, error) {
		return ingest.StoreOutcomes(ctx, cfg.Pool, list)
	}
	return r
}

// newTask is the task of a record's feed, in the trace of its batch's upload.
func (r *Records) newTask(ref ingest.Ref, business, traceparent string) *asynq.Task {
	payload, err := json.Marshal(Payload{BatchID: ref.Batch.String(), Row: ref.Row, BusinessID: business, Feed: ref.Feed})
	if err != nil {
		panic(err) // a struct of strings and ints always marshals
	}
	return tracing.NewTaskFrom(traceparent, TypeImport, payload,
		asynq.TaskID(TaskID(ref)),
		asynq.Queue(Queue),
		asynq.MaxRetry(maxTaskRetries),
		// The claim, the permit, the call and storing its outcome.
		asynq.Timeout(r.cfg.lease()+storeRetry),
		asynq.Retention(r.cfg.TaskRetention),
	)
}
