package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/client"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// TestEndToEnd drives the real service through the client, from an entity
// to a downloaded report, and checks the contract's error answers.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := apitest.New(t, apitest.Options{})
	key, business := e.Business(t)
	e.StartWorker(t, 5*time.Second)
	c := client.New(e.URL, key, client.WithPollInterval(50*time.Millisecond), client.WithRetry(2, 10*time.Millisecond))

	// Entities: three created, one read back by externalId, all listed.
	var ids []string
	for range 3 {
		ent, err := c.CreateEntity(ctx, client.CreateEntityRequest{Type: client.EntityIndividual})
		if err != nil {
			t.Fatal(err)
		}
		if ent.KYCStatus != "NOT_STARTED" || ent.BusinessID != business.String() {
			t.Errorf("new entity: %+v", ent)
		}
		ids = append(ids, ent.ExternalID)
	}
	got, err := c.GetEntity(ctx, ids[0])
	if err != nil || got.ExternalID != ids[0] {
		t.Errorf("GetEntity(%s) = %+v, %v", ids[0], got, err)
	}
	page, err := c.ListEntities(ctx, client.ListOptions{Limit: 2})
	if err != nil || len(page.Entities) != 2 || page.NextCursor == nil {
		t.Fatalf("ListEntities(limit 2) = %+v, %v", page, err)
	}
	last, err := c.ListEntities(ctx, client.ListOptions{Limit: 2, Cursor: *page.NextCursor})
	if err != nil || len(last.Entities) != 1 || last.NextCursor != nil {
		t.Errorf("ListEntities(second page) = %+v, %v", last, err)
	}
	_, err = c.CreateEntity(ctx, client.CreateEntityRequest{ExternalID: ids[0], Type: client.EntityIndividual})
	checkError(t, err, http.StatusConflict, client.CodeEntityExists, "entity with this externalId already exists")
	if !client.IsConflict(err) {
		t.Errorf("IsConflict(%v) = false", err)
	}

	// A batch of three rows, the second of which Sumsub refuses.
	csv := fmt.Sprintf("externalId,shareToken\n%s,ok-1\n%s,%s2\n%s,ok-3\n", ids[0], ids[1], sumsubsim.PrefixInvalid, ids[2])
	up, err := c.UploadBatch(ctx, strings.NewReader(csv), client.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if up.Status != client.BatchPending || up.TotalRecords != 3 || up.IdempotencyKey == "" {
		t.Errorf("upload: %+v", up)
	}
	var polls []client.Batch
	final, err := c.WaitBatch(ctx, up.BatchID, func(b client.Batch) { polls = append(polls, b) })
	if err != nil {
		t.Fatal(err)
	}
	if len(polls) == 0 || polls[len(polls)-1].Status != final.Status {
		t.Errorf("progress saw %d polls, the last %+v; final %+v", len(polls), polls, final)
	}
	gotCounts := fmt.Sprintf("%s %d/%d failed %d ok %d", final.Status, final.ProcessedRecords, final.TotalRecords, final.FailedRecords, final.Summary.SuccessfulRecords)
	if want := "completed 3/3 failed 1 ok 2"; gotCounts != want {
		t.Errorf("final batch: %s, want %s", gotCounts, want)
	}
	if final.CompletedAt == nil || final.EstimatedCompletionAt != nil {
		t.Errorf("final batch times: %+v", final)
	}

	// The same key again is refused; nothing retries a 400.
	_, err = c.UploadBatch(ctx, strings.NewReader(csv), client.UploadOptions{IdempotencyKey: up.IdempotencyKey})
	checkError(t, err, http.StatusBadRequest, client.CodeIdempotencyKeyUsed, "A request with this idempotency key has already been processed")

	// Records: the failed one, then all of them a page of one at a time.
	failed, err := c.ListRecords(ctx, up.BatchID, client.RecordsOptions{Status: client.RecordFailed})
	if err != nil || len(failed.Records) != 1 || failed.Records[0].Row != 3 || failed.Records[0].ErrorCode == nil {
		t.Errorf("failed records = %+v, %v", failed, err)
	}
	var rows []string
	for r, err := range c.AllRecords(ctx, up.BatchID, client.RecordsOptions{Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, fmt.Sprintf("%d %s %s", r.Row, r.ExternalID, r.Status))
	}
	wantRows := []string{"2 " + ids[0] + " succeeded", "3 " + ids[1] + " failed", "4 " + ids[2] + " succeeded"}
	if diff := cmp.Diff(wantRows, rows); diff != "" {
		t.Errorf("AllRecords (-want +got):\n%s", diff)
	}

	// The report: initiated, waited for, downloaded through its link.
	rep, err := c.InitiateReport(ctx, up.BatchID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.ID, "bulk_stamper_order_usage_report_") || rep.BatchID != up.BatchID {
		t.Errorf("initiated report: %+v", rep)
	}
	built, err := c.WaitReport(ctx, rep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if built.Status != client.ReportSuccess || built.Link == nil || *built.Stats != (client.ReportStats{Available: 2, Failed: 1}) {
		t.Fatalf("built report: %+v", built)
	}
	var csvOut bytes.Buffer
	n, err := c.DownloadReport(ctx, rep.ID, &csvOut)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(csvOut.Len()) || !strings.HasPrefix(csvOut.String(), "row,externalId,status,applicantId,reviewStatus,errorCode,errorMessage,attempts,processedAt\n") ||
		strings.Count(csvOut.String(), "\n") != 4 {
		t.Errorf("downloaded %d bytes:\n%s", n, csvOut.String())
	}
	res, err := http.Get(*built.Link)
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Equal(direct, csvOut.Bytes()) {
		t.Errorf("DownloadReport wrote\n%s\nthe link serves\n%s", csvOut.Bytes(), direct)
	}

	// Error answers of both families.
	_, err = c.GetBatch(ctx, uuid.NewString())
	checkError(t, err, http.StatusNotFound, client.CodeBatchNotFound, "batch not found")
	if !client.IsNotFound(err) {
		t.Errorf("IsNotFound(%v) = false", err)
	}
	_, err = c.GetEntity(ctx, uuid.NewString())
	checkError(t, err, http.StatusNotFound, client.CodeEntityNotFound, "entity not found")
	_, err = c.GetReport(ctx, "bulk_stamper_order_usage_report_AAAAAAAAAAAAAAAAAAAA")
	checkError(t, err, http.StatusNotFound, "report_not_found", "Report not found")
	_, err = c.InitiateReport(ctx, uuid.NewString())
	checkError(t, err, http.StatusNotFound, "batch_not_found", "Batch not found")
	_, err = c.UploadBatch(ctx, strings.NewReader(fmt.Sprintf("externalId,shareToken\n%s,\n", ids[0])), client.UploadOptions{})
	checkError(t, err, http.StatusBadRequest, client.CodeUploadInvalid, "CSV validation failed: 1 error(s) found.\nRow 2: Missing required field 'shareToken'")
	_, err = client.New(e.URL, "not-a-key").GetBatch(ctx, up.BatchID)
	checkError(t, err, http.StatusUnauthorized, client.CodeInvalidAPIKey, "Invalid Authorization")
}

// checkError requires err to be an API error with this status, code and
// message.
func checkError(tb testing.TB, err error, status int, code, message string) {
	tb.Helper()
	var apiErr *client.Error
	if !errors.As(err, &apiErr) {
		tb.Errorf("error %v (%T) is not a *client.Error", err, err)
		return
	}
	got := fmt.Sprintf("%d %s %q", apiErr.StatusCode, apiErr.Code, apiErr.Message)
	if want := fmt.Sprintf("%d %s %q", status, code, message); got != want {
		tb.Errorf("error = %s, want %s", got, want)
	}
}

// TestUploadRetriesWithTheSameKey answers 503 twice, then accepts: the
// client must have sent the whole file and one Idempotency-Key each time.
func TestUploadRetriesWithTheSameKey(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		keys  []string
		files []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, _, err := r.FormFile("file")
		if err != nil {
			t.Errorf("attempt without a file: %v", err)
			return
		}
		b, _ := io.ReadAll(f)
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		files = append(files, string(b))
		attempt := len(keys)
		mu.Unlock()
		if r.Header.Get("X-Provider") != "sumsub" || r.Header.Get("Authorization") != "Bearer k" {
			t.Errorf("attempt %d headers: %v", attempt, r.Header)
		}
		w.Header().Set("Content-Type", "application/json")
		if attempt <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"code":"0000000500","message":"Internal server error","parameter":""}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"batchId":"f208a887-9fa6-4447-a52b-c1d6e089536f","businessUuid":"64f6821b-c06a-49e6-aeba-477bb6a1bd11","status":"pending","totalRecords":1,"message":"File uploaded successfully. Processing will start shortly.","createdAt":"2025-10-08T11:40:20.796Z"}`)
	}))
	defer srv.Close()
	c := client.New(srv.URL, "k", client.WithRetry(3, time.Millisecond))
	const file = "externalId,shareToken\n5f0f7c43-4a86-4d0b-9e8c-9ad0c2b7b0b1,tok\n"
	up, err := c.UploadBatch(t.Context(), strings.NewReader(file), client.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if up.BatchID != "f208a887-9fa6-4447-a52b-c1d6e089536f" || up.TotalRecords != 1 {
		t.Errorf("upload: %+v", up)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{up.IdempotencyKey, up.IdempotencyKey, up.IdempotencyKey}
	if diff := cmp.Diff(want, keys); diff != "" || up.IdempotencyKey == "" {
		t.Errorf("Idempotency-Key of each attempt (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{file, file, file}, files); diff != "" {
		t.Errorf("file of each attempt (-want +got):\n%s", diff)
	}
}

// TestRetryPolicy checks which answers are retried, and that Retry-After
// is waited for.
func TestRetryPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		status       int
		retryAfter   string
		wantAttempts int
		minElapsed   time.Duration
	}{
		{name: "400 is final", status: http.StatusBadRequest, wantAttempts: 1},
		{name: "404 is final", status: http.StatusNotFound, wantAttempts: 1},
		{name: "500 is retried", status: http.StatusInternalServerError, wantAttempts: 3},
		{name: "429 waits for Retry-After", status: http.StatusTooManyRequests, retryAfter: "1", wantAttempts: 3, minElapsed: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			attempts := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				attempts++
				mu.Unlock()
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, `{"code":"0701020100","message":"batch not found","parameter":"batchId"}`)
			}))
			defer srv.Close()
			c := client.New(srv.URL, "k", client.WithRetry(2, time.Millisecond))
			start := time.Now()
			_, err := c.GetBatch(t.Context(), uuid.NewString())
			if client.StatusCode(err) != tt.status {
				t.Errorf("error %v, want status %d", err, tt.status)
			}
			mu.Lock()
			defer mu.Unlock()
			if attempts != tt.wantAttempts {
				t.Errorf("%d attempts, want %d", attempts, tt.wantAttempts)
			}
			if elapsed := time.Since(start); elapsed < tt.minElapsed {
				t.Errorf("took %s, want at least %s", elapsed, tt.minElapsed)
			}
		})
	}
}

// TestRetryConnectionErrors retries a GET whose connection fails, and not a
// POST without an Idempotency-Key, which the server may have acted on.
func TestRetryConnectionErrors(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	attempts := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		attempts[r.Method]++
		n := attempts[r.Method]
		mu.Unlock()
		if n == 1 {
			// Drop the connection without an answer.
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"batchId":"b","status":"completed"}`)
	}))
	defer srv.Close()
	c := client.New(srv.URL, "k", client.WithRetry(2, time.Millisecond))
	if b, err := c.GetBatch(t.Context(), "b"); err != nil || b.Status != "completed" {
		t.Errorf("GetBatch after a dropped connection = %+v, %v", b, err)
	}
	if _, err := c.InitiateReport(t.Context(), "b"); err == nil || client.StatusCode(err) != 0 {
		t.Errorf("InitiateReport after a dropped connection: %v, want a transport error", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts["GET"] != 2 || attempts["POST"] != 1 {
		t.Errorf("attempts %v, want 2 GET and 1 POST", attempts)
	}
}

// TestWaitBatchStopsWithContext: a batch that never ends does not hold
// WaitBatch past its context.
func TestWaitBatchStopsWithContext(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"batchId":"b","status":"in_progress","totalRecords":2,"processedRecords":1}`)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	polls := 0
	_, err := client.New(srv.URL, "k", client.WithPollInterval(20*time.Millisecond)).WaitBatch(ctx, "b", func(client.Batch) { polls++ })
	if !errors.Is(err, context.DeadlineExceeded) || polls < 2 {
		t.Errorf("WaitBatch = %v after %d polls, want the context's deadline after several", err, polls)
	}
}

// The example of the Standard Webhooks reference libraries.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignWebhookMatchesTheSpec(t *testing.T) {
	t.Parallel()
	got, err := client.SignWebhook(vectorSecret, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	if err != nil || got != vectorSignature {
		t.Errorf("SignWebhook = %q, %v; want %q", got, err, vectorSignature)
	}
	if _, err := client.SignWebhook("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", vectorID, time.Now(), nil); !errors.Is(err, client.ErrWebhookSecret) {
		t.Errorf("SignWebhook with a secret without whsec_: %v, want ErrWebhookSecret", err)
	}
}

func TestVerifyWebhook(t *testing.T) {
	t.Parallel()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	body := []byte(`{"type":"batch.completed","data":{"batchId":"b"}}`)
	signed := func(ts time.Time, b []byte) http.Header {
		sig, err := client.SignWebhook(secret, "msg_1", ts, b)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		h.Set("webhook-id", "msg_1")
		h.Set("webhook-timestamp", fmt.Sprint(ts.Unix()))
		h.Set("webhook-signature", sig)
		return h
	}
	now := time.Now()
	tests := []struct {
		name      string
		header    http.Header
		body      []byte
		tolerance time.Duration
		secret    string
		want      error
	}{
		{name: "valid", header: signed(now, body), body: body},
		{name: "valid among other signatures", header: func() http.Header {
			h := signed(now, body)
			h.Set("webhook-signature", "v1,bm90LXRoaXMtb25l v1a,c29tZXRoaW5nIGVsc2U= "+h.Get("webhook-signature"))
			return h
		}(), body: body},
		{name: "tampered body", header: signed(now, body), body: []byte(`{"type":"batch.completed","data":{"batchId":"c"}}`), want: client.ErrWebhookSignature},
		{name: "tampered signature", header: func() http.Header {
			h := signed(now, body)
			sig := []byte(h.Get("webhook-signature"))
			sig[5] ^= 1
			h.Set("webhook-signature", string(sig))
			return h
		}(), body: body, want: client.ErrWebhookSignature},
		{name: "signature of another version", header: func() http.Header {
			h := signed(now, body)
			h.Set("webhook-signature", strings.Replace(h.Get("webhook-signature"), "v1,", "v2,", 1))
			return h
		}(), body: body, want: client.ErrWebhookSignature},
		{name: "other secret", header: signed(now, body), body: body, secret: "whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=", want: client.ErrWebhookSignature},
		{name: "old timestamp", header: signed(now.Add(-6*time.Minute), body), body: body, want: client.ErrWebhookTimestamp},
		{name: "future timestamp", header: signed(now.Add(6*time.Minute), body), body: body, want: client.ErrWebhookTimestamp},
		{name: "old timestamp within a wider tolerance", header: signed(now.Add(-6*time.Minute), body), body: body, tolerance: 10 * time.Minute},
		{name: "no headers", header: http.Header{}, body: body, want: client.ErrWebhookHeaders},
		{name: "secret without prefix", header: signed(now, body), body: body, secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", want: client.ErrWebhookSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := secret
			if tt.secret != "" {
				s = tt.secret
			}
			if err := client.VerifyWebhook(s, tt.header, tt.body, tt.tolerance); !errors.Is(err, tt.want) {
				t.Errorf("VerifyWebhook = %v, want %v", err, tt.want)
			}
		})
	}
}
