package worker_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// TestUploadRetention: a final batch says until when its raw upload (every
// share token of it) is kept: UPLOAD_RETENTION after it completed. With 0,
// the reconciler deletes it at once and the batch says when it did.
func TestUploadRetention(t *testing.T) {
	t.Parallel()
	for _, atOnce := range []bool{false, true} {
		e := apitest.New(t, apitest.Options{DeleteUploadsAtOnce: atOnce, ReconcileInterval: time.Second})
		e.StartWorker(t, 5*time.Second)
		key, business := e.Business(t)
		batchID := e.UploadBatch(t, key, apitest.CSVFile("retention", e.Entities(t, key, 2)))
		if b := e.Call(t, http.MethodGet, "/entity/kyc/import/batch/"+batchID, key, nil).JSON(t); b["fileRetainedUntil"] != nil && b["status"] != "completed" {
			t.Errorf("fileRetainedUntil %v while the batch runs, want null", b["fileRetainedUntil"])
		}
		final := e.WaitBatch(t, key, batchID, 30*time.Second)
		completed, _ := time.Parse(time.RFC3339Nano, final["completedAt"].(string))
		until, err := time.Parse(time.RFC3339Nano, final["fileRetainedUntil"].(string))
		if err != nil {
			t.Fatalf("fileRetainedUntil %v of a completed batch: %v", final["fileRetainedUntil"], err)
		}
		if !atOnce {
			if !until.Equal(completed.Add(168 * time.Hour)) {
				t.Errorf("fileRetainedUntil %s, want completedAt %s + 168h", until, completed)
			}
			time.Sleep(2 * time.Second) // two reconciliations
			if _, _, objects := e.Stored(t, business); objects != 1 {
				t.Errorf("%d raw uploads in S3 within the retention, want 1", objects)
			}
			continue
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if _, _, objects := e.Stored(t, business); objects == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the raw upload is still in S3 10 s after its batch completed, with UPLOAD_RETENTION 0")
			}
		}
		b := e.Call(t, http.MethodGet, "/entity/kyc/import/batch/"+batchID, key, nil).JSON(t)
		deleted, err := time.Parse(time.RFC3339Nano, b["fileRetainedUntil"].(string))
		if err != nil || deleted.Before(completed) || deleted.After(time.Now()) {
			t.Errorf("fileRetainedUntil %v after the deletion: want when it was deleted", b["fileRetainedUntil"])
		}
	}
}
