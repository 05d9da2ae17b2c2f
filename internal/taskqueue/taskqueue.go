// Package taskqueue is what every task handler shares: enqueueing tasks that
// must exist exactly once while their work is unfinished (the reconciler
// re-enqueues them from PostgreSQL when Redis lost them), and the retry
// vocabulary a handler answers with (RetryIn, Snooze).
package taskqueue

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
)

// Enqueuer puts tasks on Asynq; *asynq.Client is one.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Inspector tells whether Redis still knows a task; *asynq.Inspector is one.
type Inspector interface {
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
	DeleteTask(queue, id string) error
}

// EnqueueOnce enqueues task (which carries its task ID) unless Redis already
// holds it waiting or running. A finished copy kept for the dashboard
// (retention) does not count: it is deleted and the task enqueued again.
func EnqueueOnce(ctx context.Context, q Enqueuer, in Inspector, task *asynq.Task, queue, id string) error {
	_, err := q.EnqueueContext(ctx, task)
	if !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err
	}
	info, err := in.GetTaskInfo(queue, id)
	if errors.Is(err, asynq.ErrQueueNotFound) {
		// Redis was flushed and the queue's registration with it (the
		// client registers a queue once per process), but the task is
		// back: a task running during the flush wrote it on finishing or
		// scheduling its retry. It will run, or its record is final.
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect task %s: %w", id, err)
	}
	if info.State != asynq.TaskStateCompleted && info.State != asynq.TaskStateArchived {
		return nil
	}
	if err := in.DeleteTask(queue, id); err != nil {
		return fmt.Errorf("delete finished task %s: %w", id, err)
	}
	_, err = q.EnqueueContext(ctx, task)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil // another process enqueued it meanwhile
	}
	return err
}
