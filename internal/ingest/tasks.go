package ingest

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
)

// TypeDispatchBatch is the task that starts a stored batch: it marks it in
// progress and feeds its records to the Sumsub queue.
const TypeDispatchBatch = "batch:dispatch"

// QueueBatches is the Asynq queue of batch tasks.
const QueueBatches = "batches"

// DispatchBatchPayload is the payload of TypeDispatchBatch.
type DispatchBatchPayload struct {
	BatchID uuid.UUID `json:"batchId"`
}

// NewDispatchBatchTask returns the task that starts batch id. Its task ID is
// derived from the batch, so enqueueing it twice (the upload, then the
// reconciler) is a no-op while the first one is known to Redis.
func NewDispatchBatchTask(id uuid.UUID) *asynq.Task {
	payload, err := json.Marshal(DispatchBatchPayload{BatchID: id})
	if err != nil {
		panic(err) // a struct of a UUID always marshals
	}
	return asynq.NewTask(TypeDispatchBatch, payload,
		asynq.TaskID("batch:"+id.String()),
		asynq.Queue(QueueBatches),
		asynq.MaxRetry(25),
		asynq.Timeout(time.Minute),
		asynq.Retention(24*time.Hour),
	)
}

// Enqueuer puts tasks on Asynq; *asynq.Client is one. The upload only needs
// this, so tests can see what it enqueued through the real client.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}
