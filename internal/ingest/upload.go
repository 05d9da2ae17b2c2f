package ingest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/apperr"
	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/web"
)

// Errors of the upload, in the order the contract checks them.
var (
	ErrProvider       = apperr.New(apperr.Invalid, "0701010200", "Valid X-Provider header is required")
	ErrNoIdempotency  = apperr.New(apperr.Invalid, "0701010200", "Idempotency-Key header is required")
	ErrBadIdempotency = apperr.New(apperr.Invalid, "0701010200", "Idempotency-Key header must be 1 to 255 printable ASCII characters")
	ErrKeyUsed        = apperr.New(apperr.Invalid, "0701010300", "A request with this idempotency key has already been processed")
	ErrNoFile         = apperr.New(apperr.Invalid, "0701010200", "No files provided in the request")
	ErrTooLarge       = apperr.New(apperr.Invalid, "0701010100", "File size exceeds the maximum limit of 10 MB")
	ErrTooManyRows    = apperr.New(apperr.Invalid, "0701010100", fmt.Sprintf("File contains too many rows, limit is %d", MaxRows))
	ErrUnreadable     = apperr.New(apperr.Invalid, "0701010200", "The uploaded file could not be read completely")
	ErrDuplicateCard  = apperr.New(apperr.Invalid, "0701010200", "duplicate cardProcessorPublicToken found")
)

// maxBodyBytes bounds the whole multipart body: the file plus room for part
// headers and small form fields. A bigger body is cut off, never buffered.
const maxBodyBytes = MaxFileBytes + 1<<20

// FileStore keeps raw uploads; *storage.Store is one.
type FileStore interface {
	Put(ctx context.Context, key string, body io.ReadSeeker, contentType string, metadata map[string]string) error
	Delete(ctx context.Context, key string) error
}

// Handler serves the batch endpoints.
type Handler struct {
	store  *Store
	files  FileStore
	queue  Enqueuer
	logger *slog.Logger
	rate   int // Sumsub requests per second, for completion estimates
	// notifier raises batch.cancelled; nil: no events.
	notifier Notifier
}

// NewHandler returns a Handler; rate is the Sumsub rate limit, which paces every batch.
func NewHandler(store *Store, files FileStore, queue Enqueuer, logger *slog.Logger, rate int) *Handler {
	return &Handler{store: store, files: files, queue: queue, logger: logger, rate: rate}
}

// uploadResponse is the 201 body of an upload.
type uploadResponse struct {
	BatchID      uuid.UUID `json:"batchId"`
	BusinessUUID uuid.UUID `json:"businessUuid"`
	Status       string    `json:"status"`
	TotalRecords int       `json:"totalRecords"`
	Message      string    `json:"message"`
	CreatedAt    web.Time  `json:"createdAt"`
}

// Upload handles POST /entity/kyc/import/batch. It checks the request in the
// contract's order, streams the file once through the size limit, a SHA-256,
// a spool file on disk and the CSV validator, then stores the file and the
// batch together and enqueues the batch. Nothing is stored when it refuses.
func (h *Handler) Upload(c echo.Context) error {
	ctx := c.Request().Context()
	business := auth.Business(c)

	if !strings.EqualFold(strings.TrimSpace(c.Request().Header.Get("X-Provider")), "sumsub") {
		return ErrProvider
	}
	key := c.Request().Header.Get("Idempotency-Key")
	if key == "" {
		return ErrNoIdempotency
	}
	if !validIdempotencyKey(key) {
		return ErrBadIdempotency.WithParameter("Idempotency-Key")
	}
	used, err := h.store.keyUsed(ctx, business, key)
	if err != nil {
		return err
	}
	if used {
		return ErrKeyUsed
	}

	c.Request().Body = http.MaxBytesReader(c.Response(), c.Request().Body, maxBodyBytes)
	part, err := filePart(c.Request())
	if err != nil {
		return err
	}
	spool, err := readFile(part)
	if spool != nil {
		defer spool.close()
	}
	if err != nil {
		return err
	}
	tokens, err := cardTokens(spool.parsed.Records)
	if err != nil {
		return err
	}
	held, err := h.store.cardTokenHeldElsewhere(ctx, business, tokens)
	if err != nil {
		return err
	}
	if held {
		return ErrDuplicateCard
	}

	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("new batch id: %w", err)
	}
	fileKey := fmt.Sprintf("uploads/%s/%s.csv", business, id)
	stored := false
	batch, err := h.store.create(ctx, newBatch{
		ID: id, BusinessID: business, IdempotencyKey: key,
		FileKey: fileKey, FileSize: spool.size, FileSHA256: spool.sha256,
	}, spool.parsed.Records, func(ctx context.Context) error {
		if _, err := spool.file.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("rewind upload: %w", err)
		}
		err := h.files.Put(ctx, fileKey, spool.file, "text/csv", map[string]string{
			"business-id": business.String(), "batch-id": id.String(), "sha256": fmt.Sprintf("%x", spool.sha256),
		})
		stored = err == nil
		return err
	})
	if err != nil {
		if stored {
			if derr := h.files.Delete(context.WithoutCancel(ctx), fileKey); derr != nil {
				h.logger.ErrorContext(ctx, "delete raw upload of a batch that was not stored", "batch_id", id, "error", derr)
			}
		}
		if errors.Is(err, errKeyTaken) {
			return ErrKeyUsed
		}
		return err
	}

	// The batch is stored: from here on the upload succeeds. If Redis is
	// unavailable, the reconciler enqueues the batch later.
	if _, err := h.queue.EnqueueContext(ctx, NewDispatchBatchTask(batch.ID)); err != nil {
		h.logger.WarnContext(ctx, "enqueue batch; the reconciler will retry", "batch_id", batch.ID, "error", err)
	}
	h.logger.InfoContext(ctx, "batch uploaded", "batch_id", batch.ID, "business_id", business, "records", batch.Total, "bytes", spool.size)

	c.Response().Header().Set("Location", "/entity/kyc/import/batch/"+batch.ID.String())
	return web.JSON(c, http.StatusCreated, uploadResponse{
		BatchID:      batch.ID,
		BusinessUUID: business,
		Status:       batch.Status,
		TotalRecords: batch.Total,
		Message:      "File uploaded successfully. Processing will start shortly.",
		CreatedAt:    web.Time(batch.CreatedAt),
	})
}

// validIdempotencyKey reports whether key is 1..255 printable ASCII characters.
func validIdempotencyKey(key string) bool {
	if len(key) > 255 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return false
		}
	}
	return true
}

// filePart returns the multipart part named "file", skipping (and draining)
// any other part before it.
func filePart(r *http.Request) (*multipart.Part, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, ErrNoFile
	}
	for {
		part, err := mr.NextPart()
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return nil, ErrTooLarge
		case err != nil:
			return nil, ErrNoFile
		case part.FormName() == "file":
			return part, nil
		}
	}
}

// spooled is an upload read to its end: the file on disk, its size and hash,
// and what the validator made of it.
type spooled struct {
	file   *os.File
	size   int64
	sha256 []byte
	parsed Parsed
}

func (s *spooled) close() {
	s.file.Close()
	os.Remove(s.file.Name())
}

// readFile reads the file part once, to at most MaxFileBytes+1 bytes, through
// a hash, a spool file and the validator, and returns the contract's error
// for the first check it fails. The spool file (returned even with an error,
// for the caller to close) lets the raw upload reach S3 without holding it in memory.
func readFile(part io.Reader) (*spooled, error) {
	f, err := os.CreateTemp("", "kycbatch-upload-*.csv")
	if err != nil {
		return nil, fmt.Errorf("spool upload: %w", err)
	}
	s := &spooled{file: f}
	counted := &countingReader{r: io.LimitReader(part, MaxFileBytes+1)}
	sum := sha256.New()
	parsed, err := ParseCSV(io.TeeReader(counted, io.MultiWriter(f, sum)))
	var tooBig *http.MaxBytesError
	switch {
	case counted.n > MaxFileBytes || errors.As(err, &tooBig):
		return s, ErrTooLarge
	case isWriteError(err, f):
		return s, fmt.Errorf("spool upload: %w", err)
	case err != nil:
		return s, ErrUnreadable
	case parsed.TooManyRows:
		return s, ErrTooManyRows
	case parsed.ProblemCount > 0:
		return s, apperr.New(apperr.Invalid, "0701010200", parsed.Message())
	}
	s.size, s.sha256, s.parsed = counted.n, sum.Sum(nil), parsed
	return s, nil
}

// isWriteError tells a failure to write the spool file (our fault: 500) from
// a failure to read the request (the client's).
func isWriteError(err error, f *os.File) bool {
	var pathErr *os.PathError
	return errors.As(err, &pathErr) && pathErr.Path == f.Name()
}

// cardTokens maps each card token of the records to the external id of its
// row, or returns ErrDuplicateCard when a token is on two rows.
func cardTokens(records []Record) (map[string]uuid.UUID, error) {
	tokens := make(map[string]uuid.UUID)
	for _, r := range records {
		if r.CardProcessorPublicToken == "" {
			continue
		}
		if _, dup := tokens[r.CardProcessorPublicToken]; dup {
			return nil, ErrDuplicateCard
		}
		tokens[r.CardProcessorPublicToken] = r.ExternalID
	}
	return tokens, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
