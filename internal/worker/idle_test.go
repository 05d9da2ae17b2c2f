package worker_test

import (
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
	"github.com/kycbatch/kycbatch/internal/webhook"
)

// TestIdleWorkerIsQuiet: a worker with nothing to do sends Redis fewer than
// 20 commands a second (its two Asynq servers' polling of their queues and
// heartbeats, and the feeder's one question every few seconds), counted,
// not timed, with the production's webhook retry base (which paces Asynq's
// check of the other queues' retries); and a batch uploaded then starts at
// once, the worker woken by the upload.
func TestIdleWorkerIsQuiet(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{SumsubRate: 10, WebhookRetryBase: webhook.DefaultRetryBase})
	_, commands := e.StartCountedWorker(t, time.Second)
	time.Sleep(2 * time.Second) // the start-up reconciliation settles
	before := commands()
	time.Sleep(10 * time.Second)
	idle := commands() - before
	t.Logf("an idle worker sent %d Redis commands in 10 s", idle)
	if idle >= 200 {
		t.Errorf("an idle worker sent %d Redis commands in 10 s, want fewer than 200", idle)
	}
	key, _ := e.Business(t)
	batch := e.UploadBatch(t, key, apitest.CSVFile("idle", e.Entities(t, key, 1)))
	if final := e.WaitBatch(t, key, batch, 30*time.Second); final["status"] != "completed" {
		t.Errorf("batch after the idle time: %v", final)
	}
}
