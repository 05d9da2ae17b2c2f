package ingest

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
)

// TypeReconcile re-creates from PostgreSQL the work Redis lost; Asynq's
// scheduler runs it every RECONCILE_INTERVAL on QueueMaintenance.
const (
	TypeReconcile    = "maintenance:reconcile"
	QueueMaintenance = "maintenance"
)

// MaxAttempts is how many Sumsub calls a record gets before it fails with the last error.
const MaxAttempts = 8

// NewReconcileTask returns the periodic reconciler task.
func NewReconcileTask() *asynq.Task {
	return asynq.NewTask(TypeReconcile, nil,
		asynq.Queue(QueueMaintenance),
		asynq.MaxRetry(0), // the next run comes soon anyway
		asynq.Timeout(5*time.Minute),
		asynq.Retention(time.Hour),
	)
}

// recordID names a record in logs and errors: batchId:row.
func recordID(batchID uuid.UUID, row int) string {
	return fmt.Sprintf("%s:%d", batchID, row)
}
