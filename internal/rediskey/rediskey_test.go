package rediskey_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/kycbatch/kycbatch/internal/rediskey"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
)

// TestAsynqKeys holds the keys of Asynq's that the feeder reads to what
// Asynq writes: a queue's pending list, its lease set (an active task's
// lease ends a lease duration ahead), its retry set, its pause flag and the
// registry of queues. An upgrade of Asynq that moves them fails here.
func TestAsynqKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Client(t)
	const queue = "keys"
	client := asynq.NewClientFromRedisClient(rdb)
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	count := func(what string, n int64, err error, want int64) {
		t.Helper()
		if err != nil || n != want {
			t.Errorf("%s: %d, %v; want %d", what, n, err, want)
		}
	}

	if _, err := client.Enqueue(asynq.NewTask("t", nil), asynq.Queue(queue), asynq.TaskID("a")); err != nil {
		t.Fatal(err)
	}
	n, err := rdb.LLen(ctx, rediskey.AsynqPending(queue)).Result()
	count("pending list", n, err, 1)
	if ok, err := rdb.SIsMember(ctx, rediskey.AsynqQueues, queue).Result(); err != nil || !ok {
		t.Errorf("queue registry: %v, %v", ok, err)
	}
	if err := inspector.PauseQueue(queue); err != nil {
		t.Fatal(err)
	}
	n, err = rdb.Exists(ctx, rediskey.AsynqPaused(queue)).Result()
	count("paused flag", n, err, 1)
	if err := inspector.UnpauseQueue(queue); err != nil {
		t.Fatal(err)
	}

	// A server runs the task: while it runs, its lease; then it fails into retry.
	running, release := make(chan struct{}), make(chan struct{})
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Queues: map[string]int{queue: 1}, Concurrency: 1,
		TaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.FatalLevel,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour }})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		close(running)
		<-release
		return errors.New("failed")
	})); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("the task did not start")
	}
	ends, err := rdb.ZScore(ctx, rediskey.AsynqLease(queue), "a").Result()
	if want := time.Now().Add(rediskey.AsynqLeaseDuration).Unix(); err != nil || ends < float64(want-2) || ends > float64(want+1) {
		t.Errorf("lease of the running task ends at %v (%v), want about %d", ends, err, want)
	}
	n, err = rdb.LLen(ctx, rediskey.AsynqActive(queue)).Result()
	count("active list", n, err, 1)
	close(release)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, _ := rdb.ZCard(ctx, rediskey.AsynqRetry(queue)).Result(); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed task is not in the retry set")
		}
	}
}
