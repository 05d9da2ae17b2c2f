package httpapi_test

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// slowUpload starts an upload whose body arrives only when release is
// closed (its Content-Length announced), and returns its answer's channel.
func slowUpload(t *testing.T, e *apitest.Env, key, idem string, csv []byte, release <-chan struct{}) <-chan apitest.Response {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "batch.csv")
	fw.Write(csv)
	mw.Close()
	req := e.UploadRequest(t, key, idem, nil, nil)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	pr, pw := io.Pipe()
	req.Body, req.ContentLength = pr, int64(body.Len())
	go func() {
		<-release
		pw.Write(body.Bytes())
		pw.Close()
	}()
	answer := make(chan apitest.Response, 1)
	go func() { answer <- e.Do(t, req) }()
	return answer
}

// TestUploadGate: a business gets at most its uploads in flight (429), all
// businesses together at most the byte budget (503); both refuse before
// the idempotency key and the file are looked at, with Retry-After, and
// the key stays free.
func TestUploadGate(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{UploadMaxConcurrent: 2, UploadMaxInflightBytes: 4000})
	busy, busyID := e.Business(t)
	other, _ := e.Business(t)
	csv := apitest.CSVFile("gate", e.Entities(t, busy, 3)) // about 0.4 kB with its multipart wrapping

	release := make(chan struct{})
	held := []<-chan apitest.Response{slowUpload(t, e, busy, "held-1", csv, release), slowUpload(t, e, busy, "held-2", csv, release)}
	time.Sleep(200 * time.Millisecond) // both are in flight
	r := e.Upload(t, busy, "third", csv)
	want := `{"code":"0701010400","message":"Too many uploads in progress, retry later","parameter":""}`
	if r.Status != http.StatusTooManyRequests || string(r.Body) != want || r.Header.Get("Retry-After") != "1" {
		t.Errorf("a third upload in flight: %d %s Retry-After %q, want 429 %s", r.Status, r.Body, r.Header.Get("Retry-After"), want)
	}
	// Another business: its own count, the shared bytes (two held, about
	// 0.8 kB of 4 kB): a body announced at 4 kB more does not fit.
	big := bytes.Repeat([]byte("x"), 4000)
	req := e.UploadRequest(t, other, "big", big, nil)
	r = e.Do(t, req)
	want = `{"code":"0701010500","message":"Upload capacity reached, retry later","parameter":""}`
	if r.Status != http.StatusServiceUnavailable || string(r.Body) != want || r.Header.Get("Retry-After") != "1" {
		t.Errorf("over the byte budget: %d %s, want 503 %s", r.Status, r.Body, want)
	}
	if r := e.Upload(t, other, "small", apitest.CSVFile("other", e.Entities(t, other, 1))); r.Status != http.StatusCreated {
		t.Errorf("another business's small upload: %d %s, want 201", r.Status, r.Body)
	}

	close(release)
	for i, a := range held {
		if r := <-a; r.Status != http.StatusCreated {
			t.Errorf("held upload %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	// The refused upload's key is free: nothing was stored for it.
	if batches, _, _ := e.Stored(t, busyID); batches != 2 {
		t.Errorf("%d batches stored, want the two held", batches)
	}
	if r := e.Upload(t, busy, "third", apitest.CSVFile("third", e.Entities(t, busy, 1))); r.Status != http.StatusCreated {
		t.Errorf("the refused key, sent again: %d %s, want 201", r.Status, r.Body)
	}
}
