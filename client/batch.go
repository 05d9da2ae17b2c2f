package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
)

// MaxUploadBytes is the largest file the service accepts (API.md §1).
const MaxUploadBytes = 10 << 20

// Batch statuses.
const (
	BatchPending    = "pending"
	BatchInProgress = "in_progress"
	BatchCompleted  = "completed"
	BatchFailed     = "failed"
	BatchCancelled  = "cancelled"
)

// UploadOptions tune UploadBatch.
type UploadOptions struct {
	// IdempotencyKey identifies the upload (1..255 printable ASCII): an
	// upload with a key already taken by a batch is refused with
	// CodeIdempotencyKeyUsed. Empty makes a random key; every retry of one
	// call sends the same key.
	IdempotencyKey string
	// Filename is the file name sent in the multipart part (default
	// "batch.csv").
	Filename string
	// Provider is the X-Provider header (default "sumsub", the only one).
	Provider string
}

// Upload is the service's answer to an accepted upload.
type Upload struct {
	BatchID      string    `json:"batchId"`
	BusinessUUID string    `json:"businessUuid"`
	Status       string    `json:"status"`
	TotalRecords int       `json:"totalRecords"`
	Message      string    `json:"message"`
	CreatedAt    time.Time `json:"createdAt"`
	// IdempotencyKey is the key the upload was sent with (the generated
	// one when UploadOptions had none); not part of the answer.
	IdempotencyKey string `json:"-"`
}

// UploadBatch uploads a CSV batch read from file (POST
// /entity/kyc/import/batch). The file is read into memory (at most
// MaxUploadBytes and one byte more, so that a larger file is refused by the
// service with its contract error) so that it can be sent again on a retry.
//
// A retry after a connection error may find that the first attempt was
// accepted: it then fails with CodeIdempotencyKeyUsed, and the batch exists.
func (c *Client) UploadBatch(ctx context.Context, file io.Reader, opts UploadOptions) (Upload, error) {
	if opts.IdempotencyKey == "" {
		opts.IdempotencyKey = uuid.NewString()
	}
	if opts.Filename == "" {
		opts.Filename = "batch.csv"
	}
	if opts.Provider == "" {
		opts.Provider = "sumsub"
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", multipart.FileContentDisposition("file", opts.Filename))
	h.Set("Content-Type", "text/csv")
	part, err := mw.CreatePart(h)
	if err != nil {
		return Upload{}, err
	}
	if _, err := io.Copy(part, io.LimitReader(file, MaxUploadBytes+1)); err != nil {
		return Upload{}, fmt.Errorf("read batch file: %w", err)
	}
	if err := mw.Close(); err != nil {
		return Upload{}, err
	}
	r := request{
		method:     http.MethodPost,
		path:       "/entity/kyc/import/batch",
		header:     http.Header{},
		body:       body.Bytes(),
		repeatable: true, // the key makes a repeat harmless
	}
	r.header.Set("Content-Type", mw.FormDataContentType())
	r.header.Set("X-Provider", opts.Provider)
	r.header.Set("Idempotency-Key", opts.IdempotencyKey)
	// A refused upload (the business's uploads in flight, the server's
	// capacity) is answered before the file is sent, when the transport
	// waits for 100 Continue (http.DefaultTransport does, a second).
	r.header.Set("Expect", "100-continue")
	var u Upload
	err = c.callJSON(ctx, r, &u)
	u.IdempotencyKey = opts.IdempotencyKey
	return u, err
}

// UploadFile uploads the CSV file at path; see UploadBatch. The file name
// sent is the path's base name unless opts has one.
func (c *Client) UploadFile(ctx context.Context, path string, opts UploadOptions) (Upload, error) {
	f, err := os.Open(path)
	if err != nil {
		return Upload{}, err
	}
	defer f.Close()
	if opts.Filename == "" {
		opts.Filename = filepath.Base(path)
	}
	return c.UploadBatch(ctx, f, opts)
}

// Batch is a batch's status and counters.
type Batch struct {
	BatchID          string       `json:"batchId"`
	BusinessUUID     string       `json:"businessUuid"`
	Provider         string       `json:"provider"`
	Status           string       `json:"status"` // BatchPending, BatchInProgress...
	TotalRecords     int          `json:"totalRecords"`
	ProcessedRecords int          `json:"processedRecords"` // succeeded + failed
	FailedRecords    int          `json:"failedRecords"`
	Summary          BatchSummary `json:"summary"`
	CreatedAt        time.Time    `json:"createdAt"`
	UpdatedAt        time.Time    `json:"updatedAt"`
	StartedAt        *time.Time   `json:"startedAt"`
	CompletedAt      *time.Time   `json:"completedAt"`
	// EstimatedCompletionAt is the service's estimate; nil once done.
	EstimatedCompletionAt *time.Time `json:"estimatedCompletionAt"`
}

// BatchSummary sums up a batch's results.
type BatchSummary struct {
	SuccessfulRecords int          `json:"successfulRecords"`
	Errors            []ErrorGroup `json:"errors"` // up to 20, largest first
}

// ErrorGroup counts the records of a batch that failed alike.
type ErrorGroup struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Count   int    `json:"count"`
}

// Done reports whether the batch's status is final (completed, failed or
// cancelled).
func (b Batch) Done() bool {
	switch b.Status {
	case BatchCompleted, BatchFailed, BatchCancelled:
		return true
	}
	return false
}

// GetBatch reads a batch's status (GET /entity/kyc/import/batch/{id}).
func (c *Client) GetBatch(ctx context.Context, batchID string) (Batch, error) {
	var b Batch
	err := c.getJSON(ctx, batchPath(batchID), &b)
	return b, err
}

// CancelBatch stops a pending or in-progress batch (POST .../cancel):
// records not yet sent to Sumsub become cancelled.
func (c *Client) CancelBatch(ctx context.Context, batchID string) (Batch, error) {
	var b Batch
	err := c.callJSON(ctx, request{method: http.MethodPost, path: batchPath(batchID) + "/cancel", repeatable: true}, &b)
	return b, err
}

// WaitBatch polls the batch (every WithPollInterval, default 1 s) until its
// status is final and returns it; onProgress, if not nil, sees every poll.
// A batch that ends failed or cancelled is returned without error: check
// its Status.
func (c *Client) WaitBatch(ctx context.Context, batchID string, onProgress func(Batch)) (Batch, error) {
	for {
		b, err := c.GetBatch(ctx, batchID)
		if err != nil {
			return b, err
		}
		if onProgress != nil {
			onProgress(b)
		}
		if b.Done() {
			return b, nil
		}
		if err := sleep(ctx, c.pollInterval); err != nil {
			return b, err
		}
	}
}

// Record statuses.
const (
	RecordPending   = "pending"
	RecordSucceeded = "succeeded"
	RecordFailed    = "failed"
	RecordCancelled = "cancelled"
)

// Record is the result of one batch row.
type Record struct {
	Row          int        `json:"row"` // spreadsheet row: the first data row is 2
	ExternalID   string     `json:"externalId"`
	Status       string     `json:"status"` // RecordPending, RecordSucceeded...
	ApplicantID  *string    `json:"applicantId"`
	ReviewStatus *string    `json:"reviewStatus"`
	ErrorCode    *string    `json:"errorCode"`
	ErrorMessage *string    `json:"errorMessage"`
	Attempts     int        `json:"attempts"`
	ProcessedAt  *time.Time `json:"processedAt"`
}

// RecordsOptions select a page of a batch's records.
type RecordsOptions struct {
	Status string // RecordFailed, RecordSucceeded or RecordPending; empty for all
	Limit  int    // 1..1000; 0 takes the server's default (100)
	Cursor string // NextCursor of the previous page; empty for the first
}

// RecordPage is a page of a batch's records, by row.
type RecordPage struct {
	Records    []Record `json:"records"`
	NextCursor *string  `json:"nextCursor"` // nil on the last page
}

// ListRecords reads a page of a batch's records (GET .../records).
func (c *Client) ListRecords(ctx context.Context, batchID string, opts RecordsOptions) (RecordPage, error) {
	var p RecordPage
	path := batchPath(batchID) + "/records" + query("status", opts.Status, "limit", limitParam(opts.Limit), "cursor", opts.Cursor)
	err := c.getJSON(ctx, path, &p)
	return p, err
}

// AllRecords walks every page of a batch's records from opts.Cursor; an
// error ends the walk after being yielded.
//
//	for rec, err := range c.AllRecords(ctx, id, client.RecordsOptions{Status: client.RecordFailed}) {
//		if err != nil { ... }
//	}
func (c *Client) AllRecords(ctx context.Context, batchID string, opts RecordsOptions) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		for {
			p, err := c.ListRecords(ctx, batchID, opts)
			if err != nil {
				yield(Record{}, err)
				return
			}
			for _, r := range p.Records {
				if !yield(r, nil) {
					return
				}
			}
			if p.NextCursor == nil || *p.NextCursor == "" {
				return
			}
			opts.Cursor = *p.NextCursor
		}
	}
}

// BatchesOptions select a page of the business's batches.
type BatchesOptions struct {
	Status         string // pending, in_progress, completed, failed or cancelled; empty for all
	IdempotencyKey string // only the batch made with this key (a lost 201)
	Limit          int    // 1..100; 0 takes the server's default (20)
	Cursor         string // NextCursor of the previous page; empty for the first
}

// BatchPage is a page of the business's batches, newest first.
type BatchPage struct {
	Batches    []Batch `json:"batches"`
	NextCursor *string `json:"nextCursor"` // nil on the last page
}

// ListBatches reads a page of the business's batches (GET /entity/kyc/import/batch).
func (c *Client) ListBatches(ctx context.Context, opts BatchesOptions) (BatchPage, error) {
	var p BatchPage
	path := "/entity/kyc/import/batch" + query("status", opts.Status, "idempotencyKey", opts.IdempotencyKey,
		"limit", limitParam(opts.Limit), "cursor", opts.Cursor)
	err := c.getJSON(ctx, path, &p)
	return p, err
}

func batchPath(id string) string {
	return "/entity/kyc/import/batch/" + url.PathEscape(id)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
