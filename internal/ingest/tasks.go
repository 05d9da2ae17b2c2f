package ingest

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
)

// Task types, as the Asynq dashboard shows them.
const (
	// TypeDispatchBatch starts a stored batch: it marks it in progress and
	// feeds the first window of its records to the Sumsub queue.
	TypeDispatchBatch = "batch:dispatch"
	// TypeImportRecord imports one record's applicant from Sumsub.
	TypeImportRecord = "sumsub:import_record"
	// TypeReconcile re-enqueues the work that Redis lost.
	TypeReconcile = "maintenance:reconcile"
)

// Asynq queues of the pipeline (the reports queue belongs to reports).
const (
	QueueBatches     = "batches"
	QueueSumsub      = "sumsub"
	QueueMaintenance = "maintenance"
)

// MaxAttempts is how many Sumsub calls a record gets before it fails with the last error.
const MaxAttempts = 8

// retention keeps finished tasks visible in the dashboard for a day.
const retention = 24 * time.Hour

// DispatchBatchPayload is the payload of TypeDispatchBatch.
type DispatchBatchPayload struct {
	BatchID uuid.UUID `json:"batchId"`
}

// ImportRecordPayload is the payload of TypeImportRecord. It names the record
// only: the share token stays in PostgreSQL, out of Redis and the dashboard.
type ImportRecordPayload struct {
	BatchID uuid.UUID `json:"batchId"`
	Row     int       `json:"row"`
}

// NewDispatchBatchTask returns the task that starts batch id. Its task ID is
// derived from the batch, so enqueueing it twice (the upload, then the
// reconciler) is a no-op while Redis knows the first one.
func NewDispatchBatchTask(id uuid.UUID) *asynq.Task {
	return asynq.NewTask(TypeDispatchBatch, mustJSON(DispatchBatchPayload{BatchID: id}),
		asynq.TaskID("batch:"+id.String()),
		asynq.Queue(QueueBatches),
		asynq.MaxRetry(25),
		asynq.Timeout(time.Minute),
		asynq.Retention(retention),
	)
}

// NewImportRecordTask returns the task of one record; its ID is batchId:row.
// Attempts are counted in PostgreSQL (MaxAttempts); Asynq's own retry budget
// is only a backstop, larger than it.
func NewImportRecordTask(batchID uuid.UUID, row int) *asynq.Task {
	return asynq.NewTask(TypeImportRecord, mustJSON(ImportRecordPayload{BatchID: batchID, Row: row}),
		asynq.TaskID(recordTaskID(batchID, row)),
		asynq.Queue(QueueSumsub),
		asynq.MaxRetry(3*MaxAttempts),
		asynq.Timeout(time.Minute),
		asynq.Retention(retention),
	)
}

// NewReconcileTask returns the periodic reconciler task.
func NewReconcileTask() *asynq.Task {
	return asynq.NewTask(TypeReconcile, nil,
		asynq.Queue(QueueMaintenance),
		asynq.MaxRetry(0), // the next run comes soon anyway
		asynq.Timeout(5*time.Minute),
		asynq.Retention(time.Hour),
	)
}

func recordTaskID(batchID uuid.UUID, row int) string {
	return fmt.Sprintf("%s:%d", batchID, row)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // payloads are structs of UUIDs and ints: they always marshal
	}
	return b
}
