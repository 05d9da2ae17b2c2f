package ingest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/schedule"
	"github.com/kycbatch/kycbatch/internal/tracing"
)

// Errors of an upload, besides the file's own problems (*FileError).
var (
	ErrKeyUsed       = errors.New("a request with this idempotency key has already been processed")
	ErrTooLarge      = errors.New("file size exceeds the maximum limit")
	ErrTooManyRows   = errors.New("file contains too many rows")
	ErrUnreadable    = errors.New("the uploaded file could not be read completely")
	ErrDuplicateCard = errors.New("duplicate cardProcessorPublicToken found")
	// ErrInvalidFile is what every *FileError is.
	ErrInvalidFile = errors.New("CSV validation failed")
)

// FileError is a file that breaks the CSV rules: Detail is the contract's
// message, every problem with its row.
type FileError struct{ parsed Parsed }

func (e *FileError) Error() string { return e.parsed.Message() }

// Detail is what a client is shown: no field, and the problems.
func (e *FileError) Detail() (parameter, message string) { return "", e.parsed.Message() }

// Is makes a FileError an ErrInvalidFile.
func (e *FileError) Is(target error) bool { return target == ErrInvalidFile }

// FileStore keeps raw uploads; *storage.Store is one.
type FileStore interface {
	Put(ctx context.Context, key string, body io.ReadSeeker, contentType string, metadata map[string]string) error
	Delete(ctx context.Context, key string) error
}

// Service is what the API does with batches: uploads, status, records and
// cancellation, each for the calling business (auth.BusinessFrom).
type Service struct {
	pool   *pgxpool.Pool
	files  FileStore
	sched  *schedule.Scheduler
	outbox *event.Outbox
	logger *slog.Logger
	rate   int // Sumsub requests per second, for completion estimates
	// retention is how long a final batch's raw upload is kept.
	retention time.Duration
}

// ServiceConfig is what a Service is made of.
type ServiceConfig struct {
	Pool *pgxpool.Pool
	// Files holds the raw uploads.
	Files FileStore
	// Schedule gets each new batch's records to send.
	Schedule *schedule.Scheduler
	// Outbox announces the events recorded with the changes.
	Outbox *event.Outbox
	Logger *slog.Logger
	// Rate is the Sumsub rate limit, which paces every batch: completion
	// estimates come from it (0: none).
	Rate int
	// UploadRetention is how long a final batch's raw upload is kept.
	UploadRetention time.Duration
}

// NewService returns a Service.
func NewService(c ServiceConfig) *Service {
	return &Service{pool: c.Pool, files: c.Files, sched: c.Schedule, outbox: c.Outbox, logger: c.Logger, rate: c.Rate, retention: c.UploadRetention}
}

// schedule puts a new batch's records to send in the schedule, with its business's weight.
func (s *Service) schedule(ctx context.Context, b Batch) error {
	weights, err := auth.Weights(ctx, s.pool, []uuid.UUID{b.BusinessID})
	if err != nil {
		return err
	}
	return s.sched.Add(ctx, b.BusinessID, weights[b.BusinessID], b.ID, b.Remaining())
}

// CheckKey returns ErrKeyUsed when a batch of the calling business holds the
// idempotency key already: the contract checks it before reading the file.
func (s *Service) CheckKey(ctx context.Context, key string) error {
	var used bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM batches WHERE business_id = $1 AND idempotency_key = $2)`,
		auth.BusinessFrom(ctx), key).Scan(&used)
	if err != nil {
		return fmt.Errorf("look up idempotency key: %w", err)
	}
	if used {
		return ErrKeyUsed
	}
	return nil
}

// Upload reads file once, through the size limit, a SHA-256, a spool file on
// disk and the CSV validator, then stores it as a new batch of the calling
// business under the idempotency key and enqueues it. Nothing is stored when
// it refuses. No transaction waits on the network: the raw file goes to S3
// first, its key noted in pending_uploads, and the batch's transaction
// deletes the note; a file whose batch was not stored is deleted at once or,
// should that fail too, by the maintenance job (SweepUploads).
func (s *Service) Upload(ctx context.Context, key string, file io.Reader) (Batch, error) {
	business := auth.BusinessFrom(ctx)
	spool, err := readFile(file)
	if spool != nil {
		defer spool.close()
	}
	if err != nil {
		return Batch{}, err
	}
	tokens, err := cardTokens(spool.parsed.Records)
	if err != nil {
		return Batch{}, err
	}
	held, err := entity.CardTokenHeldElsewhere(ctx, s.pool, business, tokens)
	if err != nil {
		return Batch{}, err
	}
	if held {
		return Batch{}, ErrDuplicateCard
	}
	// A row of no entity fails at once: it is never sent to Sumsub, and its
	// share token stays unused.
	externalIDs := make([]uuid.UUID, len(spool.parsed.Records))
	for i, r := range spool.parsed.Records {
		externalIDs[i] = r.ExternalID
	}
	missing, err := entity.Missing(ctx, s.pool, business, externalIDs)
	if err != nil {
		return Batch{}, err
	}

	id, err := uuid.NewV7()
	if err != nil {
		return Batch{}, fmt.Errorf("new batch id: %w", err)
	}
	fileKey := fmt.Sprintf("uploads/%s/%s.csv", business, id)
	if _, err := s.pool.Exec(ctx, `INSERT INTO pending_uploads (file_key) VALUES ($1)`, fileKey); err != nil {
		return Batch{}, fmt.Errorf("note upload %s: %w", fileKey, err)
	}
	if _, err := spool.file.Seek(0, io.SeekStart); err != nil {
		return Batch{}, fmt.Errorf("rewind upload: %w", err)
	}
	err = s.files.Put(ctx, fileKey, spool.file, "text/csv", map[string]string{
		"business-id": business.String(), "batch-id": id.String(), "sha256": fmt.Sprintf("%x", spool.sha256),
	})
	// The dispatch: the batch stored and its records scheduled. The batch
	// keeps this span's traceparent: each record's span, which a worker
	// starts later, is its child (no task header carries it there).
	ctx, span := tracing.Tracer().Start(ctx, "ingest.dispatch_batch", trace.WithAttributes(
		attribute.String("kycbatch.batch_id", id.String()), attribute.String("kycbatch.business_id", business.String())))
	defer span.End()
	var batch Batch
	if err == nil {
		batch, err = s.create(ctx, newBatch{
			ID: id, BusinessID: business, IdempotencyKey: key,
			FileKey: fileKey, FileSize: spool.size, FileSHA256: spool.sha256,
			Traceparent: tracing.Traceparent(ctx),
		}, spool, missing)
	}
	if err != nil {
		span.RecordError(err)
		// The file may be in S3 (a PUT can fail after storing it): delete
		// it, and its note once it is gone.
		s.discardUpload(context.WithoutCancel(ctx), fileKey)
		return Batch{}, err
	}

	// The batch is stored: from here on the upload succeeds. Its records
	// join the schedule, which wakes the workers; if Redis is unavailable,
	// the reconciler puts them there later. A batch whose every row named no
	// entity has nothing to send: it is completed (the answer says pending,
	// as it was stored).
	if batch.Remaining() == 0 {
		if completed, err := CompleteIfDone(ctx, s.pool, batch.ID); err != nil {
			s.logger.WarnContext(ctx, "complete the batch; the reconciler will", "batch_id", batch.ID, "error", err)
		} else if completed {
			s.outbox.Announce(ctx, event.Key{Type: event.BatchCompleted, Subject: batch.ID.String()})
		}
	} else if err := s.schedule(ctx, batch); err != nil {
		s.logger.WarnContext(ctx, "schedule the batch; the reconciler will", "batch_id", batch.ID, "error", err)
	}
	s.logger.InfoContext(ctx, "batch uploaded", "batch_id", batch.ID, "business_id", business, "records", batch.Total, "bytes", spool.size)
	return batch, nil
}

// newBatch is what an upload stores besides its records.
type newBatch struct {
	ID             uuid.UUID
	BusinessID     uuid.UUID
	IdempotencyKey string
	FileKey        string
	FileSize       int64
	FileSHA256     []byte
	// Traceparent is the dispatch span's, kept for the records' spans; "" when not traced.
	Traceparent string
}

// create stores the batch and all its records, and clears its file's note,
// in one transaction. The records are read again from the spool file as
// the COPY takes them, so that an upload never holds its share tokens in
// memory. The records of missing entities are stored failed, with
// ENTITY_NOT_FOUND, and counted. A concurrent upload with the same
// idempotency key waits on the unique index until this one commits, then
// gets ErrKeyUsed.
func (s *Service) create(ctx context.Context, b newBatch, spool *spooled, missing map[uuid.UUID]bool) (Batch, error) {
	records := spool.parsed.Records
	failed := 0
	for _, r := range records {
		if missing[r.ExternalID] {
			failed++
		}
	}
	var batch Batch
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		batch, err = scanBatch(tx.QueryRow(ctx, `
			INSERT INTO batches (id, business_id, idempotency_key, provider, total_records, file_key, file_size, file_sha256, traceparent)
			VALUES ($1, $2, $3, 'sumsub', $4, $5, $6, $7, NULLIF($9, ''))
			RETURNING id, business_id, provider, status, total_records, 0, $8::int, 0, created_at, updated_at, started_at, completed_at, file_deleted_at`,
			b.ID, b.BusinessID, b.IdempotencyKey, len(records), b.FileKey, b.FileSize, b.FileSHA256, failed, b.Traceparent))
		if database.IsUniqueViolation(err, "batches_business_id_idempotency_key_key") {
			return ErrKeyUsed
		}
		if err != nil {
			return fmt.Errorf("insert batch: %w", err)
		}
		batchID := pgtype.UUID{Bytes: b.ID, Valid: true}
		notFound := []any{"failed", pgtype.Text{String: CodeEntityNotFound, Valid: true}, pgtype.Text{String: msgEntityNotFound, Valid: true},
			pgtype.Timestamptz{Time: batch.CreatedAt, Valid: true}}
		pending := []any{RecordPending, pgtype.Text{}, pgtype.Text{}, pgtype.Timestamptz{}}
		stream, err := streamRecords(spool.file)
		if err != nil {
			return err
		}
		defer stream.close()
		copied, err := tx.CopyFrom(ctx, pgx.Identifier{"batch_records"},
			[]string{"batch_id", "row_number", "external_id", "share_token", "applicant_level", "card_processor_public_token",
				"status", "error_code", "error_message", "processed_at"},
			stream.source(func(r Record) []any {
				// pgtype values encode directly; uuid.UUID would go through
				// driver.Valuer and a failed plan per value (half the upload's CPU).
				row := []any{batchID, int32(r.Row), pgtype.UUID{Bytes: r.ExternalID, Valid: true}, pgtype.Text{String: r.ShareToken, Valid: true},
					pgtype.Text{String: r.ApplicantLevel, Valid: r.ApplicantLevel != ""},
					pgtype.Text{String: r.CardProcessorPublicToken, Valid: r.CardProcessorPublicToken != ""}}
				if missing[r.ExternalID] {
					row[3] = pgtype.Text{} // the token is never sent: not kept
					return append(row, notFound...)
				}
				return append(row, pending...)
			}))
		if err == nil && copied != int64(len(records)) {
			err = fmt.Errorf("the file's second read gave %d records, its first %d", copied, len(records))
		}
		if err != nil {
			return fmt.Errorf("copy %d records: %w", len(records), err)
		}
		if failed > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO batch_counters (batch_id, slot, failed) VALUES ($1, 0, $2)`, b.ID, failed); err != nil {
				return fmt.Errorf("count records of missing entities: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM pending_uploads WHERE file_key = $1`, b.FileKey); err != nil {
			return fmt.Errorf("clear note of %s: %w", b.FileKey, err)
		}
		return nil
	})
	return batch, err
}

// discardUpload deletes the raw file of an upload whose batch was not
// stored, then its note; what fails is left to SweepUploads.
func (s *Service) discardUpload(ctx context.Context, fileKey string) {
	if err := deleteUpload(ctx, s.pool, s.files, fileKey); err != nil {
		s.logger.WarnContext(ctx, "delete the raw file of an upload that was not stored; the maintenance job will", "file_key", fileKey, "error", err)
	}
}

// spooled is an upload read to its end: the file on disk, its size and hash,
// and what the validator made of it (its records without their share
// tokens, which stay in the file until the batch's COPY reads them again).
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

// readFile reads the file once, to at most MaxFileBytes+1 bytes, through a
// hash, a spool file and the validator, and returns the error of the first
// check it fails. The spool file (returned even with an error, for the
// caller to close) lets the raw upload reach S3 without holding it in memory.
func readFile(file io.Reader) (*spooled, error) {
	f, err := os.CreateTemp("", "kycbatch-upload-*.csv")
	if err != nil {
		return nil, fmt.Errorf("spool upload: %w", err)
	}
	s := &spooled{file: f}
	counted := &countingReader{r: io.LimitReader(file, MaxFileBytes+1)}
	sum := sha256.New()
	parsed, err := parseKeeping(io.TeeReader(counted, io.MultiWriter(f, sum)), keep{withoutToken: true})
	switch {
	case counted.n > MaxFileBytes:
		return s, ErrTooLarge
	case isWriteError(err, f):
		return s, fmt.Errorf("spool upload: %w", err)
	case err != nil:
		// The reader's own error stays in the chain: the HTTP layer tells a
		// body over its limit from a connection that broke.
		return s, fmt.Errorf("%w: %w", ErrUnreadable, err)
	case parsed.TooManyRows:
		return s, ErrTooManyRows
	case parsed.ProblemCount > 0:
		return s, &FileError{parsed: parsed}
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

// recordStream reads a validated spool file again, on a goroutine of its
// own, and hands its records over one at a time.
type recordStream struct {
	records chan Record
	done    chan struct{}
	errc    chan error
}

// streamRecords starts reading f from its start.
func streamRecords(f io.ReadSeeker) (*recordStream, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind upload: %w", err)
	}
	s := &recordStream{records: make(chan Record, 64), done: make(chan struct{}), errc: make(chan error, 1)}
	go func() {
		defer close(s.records)
		_, err := parseKeeping(f, keep{emit: func(r Record) {
			select {
			case s.records <- r:
			case <-s.done:
			}
		}})
		s.errc <- err
	}()
	return s, nil
}

// close stops the reading (a COPY that failed) and waits for it to end.
func (s *recordStream) close() {
	close(s.done)
	for range s.records {
	}
}

// source is the stream as a COPY's source, each record made a row by row.
func (s *recordStream) source(row func(Record) []any) pgx.CopyFromSource {
	return &copySource{stream: s, row: row}
}

type copySource struct {
	stream *recordStream
	row    func(Record) []any
	cur    Record
	err    error
}

func (c *copySource) Next() bool {
	r, ok := <-c.stream.records
	if !ok {
		c.err = <-c.stream.errc
		return false
	}
	c.cur = r
	return true
}

func (c *copySource) Values() ([]any, error) { return c.row(c.cur), nil }

func (c *copySource) Err() error { return c.err }
