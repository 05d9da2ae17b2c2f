package httpapi_test

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// slowUpload starts an upload whose file is sent only when release is
// closed, and returns its status's channel once the API has let it in: it
// asks Expect: 100-continue, which the server answers when the handler
// reads the body, past the gate; the client waits for it (a minute at
// most), so the first read of the body says the upload was let in.
func slowUpload(t *testing.T, e *apitest.Env, key, idem string, csv []byte, release <-chan struct{}) <-chan int {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "batch.csv")
	fw.Write(csv)
	mw.Close()
	req := e.UploadRequest(t, key, idem, nil, nil)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Expect", "100-continue")
	admitted := make(chan struct{})
	req.Body, req.ContentLength = io.NopCloser(&heldBody{admitted: admitted, release: release, body: &body}), int64(body.Len())
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
	status := make(chan int, 1)
	go func() {
		res, err := client.Do(req)
		if err != nil {
			t.Errorf("held upload: %v", err)
			status <- 0
			return
		}
		res.Body.Close()
		status <- res.StatusCode
	}()
	select {
	case <-admitted:
	case s := <-status:
		t.Fatalf("held upload answered %d before its file was asked for", s)
	}
	return status
}

// heldBody says when it is first read, then waits for release.
type heldBody struct {
	admitted chan struct{}
	release  <-chan struct{}
	body     io.Reader
	once     sync.Once
}

func (h *heldBody) Read(p []byte) (int, error) {
	h.once.Do(func() { close(h.admitted); <-h.release })
	return h.body.Read(p)
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
	held := []<-chan int{slowUpload(t, e, busy, "held-1", csv, release), slowUpload(t, e, busy, "held-2", csv, release)}
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
		if s := <-a; s != http.StatusCreated {
			t.Errorf("held upload %d: %d, want 201", i+1, s)
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
