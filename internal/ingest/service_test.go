package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/schedule"
	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
	"github.com/kycbatch/kycbatch/internal/testing/s3test"
)

// serviceEnv is a Service on the real services of the tests: a database of
// its own, an in-process S3 server and a Redis database of its own, with an
// inspector to see what the Service enqueued and the schedule it fed.
type serviceEnv struct {
	pool      *pgxpool.Pool
	files     *storage.Store
	inspector *asynq.Inspector
	sched     *schedule.Scheduler
	svc       *Service
}

// newServiceEnv builds a serviceEnv whose resources are released when the test ends.
func newServiceEnv(tb testing.TB) *serviceEnv {
	tb.Helper()
	pool := dbtest.Pool(tb)
	files := s3test.Store(tb)
	rdb := redistest.Client(tb)
	// A client made from a Redis client shares it and leaves closing it to us.
	queue := asynq.NewClientFromRedisClient(rdb)
	logger := slog.New(slog.DiscardHandler)
	sched := schedule.New(rdb)
	if err := sched.Sync(context.Background(), nil); err != nil { // an empty schedule, as a worker's start leaves it
		tb.Fatal(err)
	}
	// A rate above zero makes Status estimate the completion of active batches.
	svc := NewService(pool, files, sched, event.NewOutbox(queue, logger), logger, 10, time.Hour)
	return &serviceEnv{pool: pool, files: files, inspector: asynq.NewInspectorFromRedisClient(rdb), sched: sched, svc: svc}
}

// business creates a business named name and returns a context acting for it,
// as the HTTP layer does once the API key checks out, and its id.
func (e *serviceEnv) business(tb testing.TB, name string) (context.Context, uuid.UUID) {
	tb.Helper()
	id, err := auth.NewStore(e.pool).EnsureBusiness(context.Background(), name)
	if err != nil {
		tb.Fatal(err)
	}
	return auth.WithBusiness(context.Background(), id), id
}

// entities creates n entities of the context's business and returns their external ids.
func (e *serviceEnv) entities(tb testing.TB, ctx context.Context, n int) []uuid.UUID {
	tb.Helper()
	store := entity.NewStore(e.pool)
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.New()
		if _, err := store.Create(ctx, ids[i], "INDIVIDUAL"); err != nil {
			tb.Fatal(err)
		}
	}
	return ids
}

// upload stores file as a batch and fails the test if the Service refuses it.
func (e *serviceEnv) upload(tb testing.TB, ctx context.Context, key string, file []byte) Batch {
	tb.Helper()
	b, err := e.svc.Upload(ctx, key, bytes.NewReader(file))
	if err != nil {
		tb.Fatalf("Upload: %v", err)
	}
	return b
}

// exec runs a statement that sets up a test's state.
func (e *serviceEnv) exec(tb testing.TB, sql string, args ...any) {
	tb.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// count returns the single integer a query answers.
func (e *serviceEnv) count(tb testing.TB, sql string, args ...any) int {
	tb.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

// stored is everything an upload can leave behind, in PostgreSQL and S3.
type stored struct {
	Batches        int
	Records        int
	PendingUploads int
	Objects        []string // keys under uploads/
}

// stored returns what the uploads of every business have left behind.
func (e *serviceEnv) stored(tb testing.TB) stored {
	tb.Helper()
	keys, err := e.files.Keys(context.Background(), "uploads/")
	if err != nil {
		tb.Fatal(err)
	}
	return stored{
		Batches:        e.count(tb, `SELECT count(*) FROM batches`),
		Records:        e.count(tb, `SELECT count(*) FROM batch_records`),
		PendingUploads: e.count(tb, `SELECT count(*) FROM pending_uploads`),
		Objects:        keys,
	}
}

// checkStored fails the test when what the uploads left behind is not want.
func (e *serviceEnv) checkStored(tb testing.TB, want stored) {
	tb.Helper()
	if diff := cmp.Diff(want, e.stored(tb), cmpopts.EquateEmpty()); diff != "" {
		tb.Errorf("stored (-want +got):\n%s", diff)
	}
}

// fileKey is where the raw file of a business's batch is kept.
func fileKey(business, batch uuid.UUID) string {
	return fmt.Sprintf("uploads/%s/%s.csv", business, batch)
}

// rowsFile returns a valid batch file with a row for each external id; the
// share token of the i-th row is share-i.
func rowsFile(ids []uuid.UUID) []byte {
	var b bytes.Buffer
	b.WriteString("externalId,shareToken\n")
	for i, id := range ids {
		fmt.Fprintf(&b, "%s,share-%d\n", id, i)
	}
	return b.Bytes()
}

// TestUpload: a valid file becomes a pending batch with its records, its raw
// bytes in S3 and its records in the schedule, and leaves no note of an
// unfinished upload.
func TestUpload(t *testing.T) {
	t.Parallel()
	e := newServiceEnv(t)
	ctx, business := e.business(t, "acme")
	ids := e.entities(t, ctx, 3)
	// The entity of the last row holds its card token already: taking it
	// again is no duplicate.
	e.exec(t, `UPDATE entities SET card_processor_public_token = 'card-2' WHERE external_id = $1`, ids[2])
	// A BOM, CRLF line ends, a blank line and padded values: the stored
	// object must still be these exact bytes, the rows numbered as a
	// spreadsheet shows them (the blank line is row 3) and the values trimmed.
	file := []byte("\xEF\xBB\xBFexternalId,shareToken,applicantLevel,cardProcessorPublicToken\r\n" +
		ids[0].String() + ",share-a,,\r\n" +
		"\r\n" +
		ids[1].String() + ", share-b ,basic-kyc-level,card-1\r\n" +
		ids[2].String() + ",share-c,,card-2\r\n")

	got := e.upload(t, ctx, "key-1", file)

	want := Batch{ID: got.ID, BusinessID: business, Provider: "sumsub", Status: "pending", Total: 3}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Batch{}, "CreatedAt", "UpdatedAt")); diff != "" {
		t.Errorf("Upload (-want +got):\n%s", diff)
	}
	if got.ID == uuid.Nil || got.CreatedAt.IsZero() {
		t.Errorf("Upload returned ID %s, CreatedAt %v; want both set", got.ID, got.CreatedAt)
	}
	e.checkStored(t, stored{Batches: 1, Records: 3, Objects: []string{fileKey(business, got.ID)}})

	t.Run("batch row", func(t *testing.T) {
		type batchRow struct {
			Key, FileKey string
			Size         int64
			SHA256       []byte
		}
		var row batchRow
		err := e.pool.QueryRow(t.Context(), `SELECT idempotency_key, file_key, file_size, file_sha256 FROM batches WHERE id = $1`, got.ID).
			Scan(&row.Key, &row.FileKey, &row.Size, &row.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(file)
		wantRow := batchRow{Key: "key-1", FileKey: fileKey(business, got.ID), Size: int64(len(file)), SHA256: sum[:]}
		if diff := cmp.Diff(wantRow, row); diff != "" {
			t.Errorf("batches row (-want +got):\n%s", diff)
		}
	})

	t.Run("records", func(t *testing.T) {
		type recordRow struct {
			Row        int
			ExternalID uuid.UUID
			ShareToken string
			Level      *string
			CardToken  *string
			Status     string
			Attempts   int
		}
		rows, err := e.pool.Query(t.Context(), `
			SELECT row_number, external_id, share_token, applicant_level, card_processor_public_token, status, attempts
			FROM batch_records WHERE batch_id = $1 ORDER BY row_number`, got.ID)
		if err != nil {
			t.Fatal(err)
		}
		var list []recordRow
		for rows.Next() {
			var r recordRow
			if err := rows.Scan(&r.Row, &r.ExternalID, &r.ShareToken, &r.Level, &r.CardToken, &r.Status, &r.Attempts); err != nil {
				t.Fatal(err)
			}
			list = append(list, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		level, card1, card2 := "basic-kyc-level", "card-1", "card-2"
		wantRows := []recordRow{
			{Row: 2, ExternalID: ids[0], ShareToken: "share-a", Status: "pending"},
			{Row: 4, ExternalID: ids[1], ShareToken: "share-b", Level: &level, CardToken: &card1, Status: "pending"},
			{Row: 5, ExternalID: ids[2], ShareToken: "share-c", CardToken: &card2, Status: "pending"},
		}
		if diff := cmp.Diff(wantRows, list); diff != "" {
			t.Errorf("batch_records (-want +got):\n%s", diff)
		}
	})

	t.Run("raw file", func(t *testing.T) {
		body, err := e.files.Get(t.Context(), fileKey(business, got.ID))
		if err != nil {
			t.Fatal(err)
		}
		defer body.Close()
		raw, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, file) {
			t.Errorf("stored object is %q, want the uploaded bytes %q", raw, file)
		}
	})

	t.Run("scheduled", func(t *testing.T) {
		// The batch's records are in the schedule: each pick is one of them.
		for i := range 3 {
			pick, ok, _, err := e.sched.Next(context.Background(), 1)
			want := schedule.Pick{Business: business, Batch: got.ID, Count: 1, Last: i == 2}
			if err != nil || !ok || pick != want {
				t.Fatalf("pick %d: %+v, %v, %v; want %+v", i, pick, ok, err, want)
			}
		}
		if pick, ok, _, err := e.sched.Next(context.Background(), 1); err != nil || ok {
			t.Errorf("a fourth pick: %+v, %v, %v; want none", pick, ok, err)
		}
	})
}

// TestUploadMissingEntities: a row naming no entity of the business is stored
// failed with ENTITY_NOT_FOUND, counted, without its share token, and never
// scheduled; a batch of such rows alone is completed by its upload.
func TestUploadMissingEntities(t *testing.T) {
	t.Parallel()
	e := newServiceEnv(t)
	ctx, _ := e.business(t, "acme")
	other, _ := e.business(t, "other")
	ids := e.entities(t, ctx, 1)
	theirs := e.entities(t, other, 1)[0] // an entity, but another business's

	b := e.upload(t, ctx, "mixed", rowsFile([]uuid.UUID{uuid.New(), ids[0], theirs}))
	st, err := e.svc.Status(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "pending" || st.Total != 3 || st.Failed != 2 || st.Remaining() != 1 {
		t.Errorf("batch: %+v, want pending with 2 of 3 records failed", st.Batch)
	}
	notFound := []ErrorGroup{{Code: CodeEntityNotFound, Message: msgEntityNotFound, Count: 2}}
	if diff := cmp.Diff(notFound, st.Errors); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if n := e.count(t, `SELECT count(*) FROM batch_records WHERE batch_id = $1 AND status = 'failed'
		AND share_token IS NULL AND attempts = 0 AND processed_at IS NOT NULL`, b.ID); n != 2 {
		t.Errorf("%d failed records without their share token, want 2", n)
	}
	pick, ok, _, err := e.sched.Next(context.Background(), 1)
	if err != nil || !ok || pick.Batch != b.ID || !pick.Last {
		t.Fatalf("pick: %+v, %v, %v; want the batch's one record to send", pick, ok, err)
	}

	none := e.upload(t, ctx, "none", rowsFile([]uuid.UUID{uuid.New(), theirs}))
	st, err = e.svc.Status(ctx, none.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "completed" || st.Failed != 2 || st.CompletedAt == nil || st.EstimatedCompletion != nil {
		t.Errorf("batch of missing entities only: %+v, want completed with 2 failed", st)
	}
	if pick, ok, _, err := e.sched.Next(context.Background(), 1); err != nil || ok {
		t.Errorf("pick: %+v, %v, %v; want none", pick, ok, err)
	}
}

// bigFile returns a file over MaxFileBytes that breaks no other rule: few
// rows, each with a long (but allowed) share token.
func bigFile() []byte {
	token := strings.Repeat("t", maxShareTokenBytes)
	var b bytes.Buffer
	b.WriteString("externalId,shareToken\n")
	for b.Len() <= MaxFileBytes {
		fmt.Fprintf(&b, "%s,%s\n", uuid.New(), token)
	}
	return b.Bytes()
}

// TestUploadRefused: every refusal of the contract stores nothing, in
// PostgreSQL or in S3.
func TestUploadRefused(t *testing.T) {
	t.Parallel()
	e := newServiceEnv(t)
	ctx, _ := e.business(t, "acme")
	ids := e.entities(t, ctx, 3)
	e.exec(t, `UPDATE entities SET card_processor_public_token = 'held' WHERE external_id = $1`, ids[0])

	tests := []struct {
		name string
		file []byte
		want error
		// detail, when set, is the message the client is shown.
		detail string
	}{
		{name: "too large", file: bigFile(), want: ErrTooLarge},
		{name: "too many rows", file: []byte(batchFile(MaxRows + 1)), want: ErrTooManyRows},
		{
			name: "bad rows",
			file: []byte("externalId,shareToken\n" +
				ids[0].String() + ",share-0\n" +
				ids[1].String() + ",\n" +
				"nope,share-2\n"),
			want:   ErrInvalidFile,
			detail: "CSV validation failed: 2 error(s) found.\nRow 3: Missing required field 'shareToken'\nRow 4: Invalid externalId 'nope': must be a UUID",
		},
		{
			name: "card token on two rows",
			file: []byte("externalId,shareToken,cardProcessorPublicToken\n" +
				ids[1].String() + ",share-1,card-x\n" +
				ids[2].String() + ",share-2,card-x\n"),
			want: ErrDuplicateCard,
		},
		{
			name: "card token held by another entity",
			file: []byte("externalId,shareToken,cardProcessorPublicToken\n" +
				ids[1].String() + ",share-1,held\n"),
			want: ErrDuplicateCard,
		},
	}
	// The cases share one environment, and run one after the other so that
	// anything a refused upload left behind is blamed on that upload.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.Upload(ctx, "key-"+tt.name, bytes.NewReader(tt.file))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Upload: %v, want %v", err, tt.want)
			}
			if tt.detail != "" {
				var fe *FileError
				if !errors.As(err, &fe) {
					t.Fatalf("Upload: %T %v, want a *FileError", err, err)
				}
				param, msg := fe.Detail()
				if diff := cmp.Diff([2]string{"", tt.detail}, [2]string{param, msg}); diff != "" {
					t.Errorf("Detail (-want +got):\n%s", diff)
				}
			}
			e.checkStored(t, stored{})
		})
	}
}

// TestUploadIdempotencyKey: a key is taken by the first stored upload, and
// the uploads that lose the race for it leave no file behind.
func TestUploadIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newServiceEnv(t)
	ctx, business := e.business(t, "acme")
	otherCtx, _ := e.business(t, "globex")
	file := rowsFile(e.entities(t, ctx, 2))

	if err := e.svc.CheckKey(ctx, "key-1"); err != nil {
		t.Fatalf("CheckKey of an unused key: %v, want nil", err)
	}
	first := e.upload(t, ctx, "key-1", file)
	if err := e.svc.CheckKey(ctx, "key-1"); !errors.Is(err, ErrKeyUsed) {
		t.Errorf("CheckKey after the upload: %v, want %v", err, ErrKeyUsed)
	}
	// Keys belong to a business: another one may use the same.
	if err := e.svc.CheckKey(otherCtx, "key-1"); err != nil {
		t.Errorf("CheckKey of another business: %v, want nil", err)
	}

	// A second upload that raced past CheckKey is stopped by the unique
	// index, after its file was put: the file must be deleted again.
	if _, err := e.svc.Upload(ctx, "key-1", bytes.NewReader(file)); !errors.Is(err, ErrKeyUsed) {
		t.Fatalf("second Upload: %v, want %v", err, ErrKeyUsed)
	}
	e.checkStored(t, stored{Batches: 1, Records: 2, Objects: []string{fileKey(business, first.ID)}})

	t.Run("concurrent uploads", func(t *testing.T) {
		// Many uploads at once with a fresh key: exactly one is stored.
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { _, errs[i] = e.svc.Upload(ctx, "key-2", bytes.NewReader(file)) })
		}
		wg.Wait()
		var ok, used int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrKeyUsed):
				used++
			default:
				t.Errorf("Upload: %v", err)
			}
		}
		if ok != 1 || used != n-1 {
			t.Errorf("%d uploads stored, %d refused with ErrKeyUsed; want 1 and %d", ok, used, n-1)
		}
		got := e.stored(t)
		if got.Batches != 2 || got.PendingUploads != 0 || len(got.Objects) != 2 {
			t.Errorf("after the concurrent uploads: %+v; want 2 batches, 2 objects, no pending upload", got)
		}
	})
}

// TestSweepUploads: only files whose note is older than any request are
// taken for orphans and deleted, with their notes.
func TestSweepUploads(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	files := s3test.Store(t)
	// An orphan (its note is older than any request), an upload still in
	// flight (a young note) and the file of a stored batch (no note).
	put := func(key string, noted time.Duration, hasNote bool) {
		t.Helper()
		if err := files.Put(ctx, key, strings.NewReader("externalId,shareToken\n"), "text/csv", nil); err != nil {
			t.Fatal(err)
		}
		if !hasNote {
			return
		}
		_, err := pool.Exec(ctx, `INSERT INTO pending_uploads (file_key, created_at) VALUES ($1, now() - make_interval(secs => $2))`,
			key, noted.Seconds())
		if err != nil {
			t.Fatal(err)
		}
	}
	put("uploads/b/orphan.csv", 2*time.Hour, true)
	put("uploads/b/in-flight.csv", 0, true)
	put("uploads/b/stored.csv", 0, false)

	n, err := SweepUploads(ctx, pool, files)
	if err != nil {
		t.Fatalf("SweepUploads: %v", err)
	}
	if n != 1 {
		t.Errorf("SweepUploads reported %d deleted, want 1", n)
	}
	keys, err := files.Keys(ctx, "uploads/")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"uploads/b/in-flight.csv", "uploads/b/stored.csv"}, keys); diff != "" {
		t.Errorf("objects left (-want +got):\n%s", diff)
	}
	rows, err := pool.Query(ctx, `SELECT file_key FROM pending_uploads ORDER BY file_key`)
	if err != nil {
		t.Fatal(err)
	}
	notes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"uploads/b/in-flight.csv"}, notes); diff != "" {
		t.Errorf("pending_uploads left (-want +got):\n%s", diff)
	}
}

// TestBatchOfAnotherBusiness: a business cannot read or cancel another
// business's batch, nor tell it from one that does not exist.
func TestBatchOfAnotherBusiness(t *testing.T) {
	t.Parallel()
	e := newServiceEnv(t)
	ctx, _ := e.business(t, "acme")
	otherCtx, _ := e.business(t, "globex")
	batch := e.upload(t, ctx, "key-1", rowsFile(e.entities(t, ctx, 2)))

	ops := []struct {
		name string
		call func(context.Context, uuid.UUID) error
	}{
		{"Status", func(ctx context.Context, id uuid.UUID) error {
			_, err := e.svc.Status(ctx, id)
			return err
		}},
		{"Records", func(ctx context.Context, id uuid.UUID) error {
			_, _, err := e.svc.Records(ctx, id, "", "", 10)
			return err
		}},
		{"Cancel", func(ctx context.Context, id uuid.UUID) error {
			_, err := e.svc.Cancel(ctx, id)
			return err
		}},
	}
	// Another business's batch answers exactly as a batch that does not exist.
	callers := []struct {
		name string
		ctx  context.Context
		id   uuid.UUID
	}{
		{"another business", otherCtx, batch.ID},
		{"unknown batch", ctx, uuid.New()},
	}
	for _, op := range ops {
		for _, c := range callers {
			if err := op.call(c.ctx, c.id); !errors.Is(err, ErrBatchNotFound) {
				t.Errorf("%s of %s: %v, want %v", op.name, c.name, err, ErrBatchNotFound)
			}
		}
	}

	// The owner still sees its batch as it was: the other's Cancel did nothing.
	st, err := e.svc.Status(ctx, batch.ID)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Status != "pending" || st.Total != 2 || st.EstimatedCompletion == nil {
		t.Errorf("Status = %s with %d records, estimate %v; want pending with 2 and an estimate", st.Status, st.Total, st.EstimatedCompletion)
	}
	if n := e.count(t, `SELECT count(*) FROM events`); n != 0 {
		t.Errorf("%d events recorded, want none", n)
	}
}

// TestRecords: the records listing pages through a batch in row order,
// filters by status and refuses cursors it did not write.
func TestRecords(t *testing.T) {
	t.Parallel()
	e := newServiceEnv(t)
	ctx, _ := e.business(t, "acme")
	ids := e.entities(t, ctx, 5)
	batch := e.upload(t, ctx, "key-1", rowsFile(ids)) // rows 2 to 6
	processed := time.Date(2025, 10, 8, 11, 40, 20, 796e6, time.UTC)
	e.exec(t, `
		UPDATE batch_records SET status = 'failed', attempts = 1, error_code = 'E1', error_message = 'bad token', processed_at = $2
		WHERE batch_id = $1 AND row_number IN (3, 5)`, batch.ID, processed)

	// pages lists the records with status, limit at a time, following the cursors.
	pages := func(t *testing.T, status string, limit int) [][]int {
		t.Helper()
		var got [][]int
		cursor := ""
		for range 10 {
			list, next, err := e.svc.Records(ctx, batch.ID, status, cursor, limit)
			if err != nil {
				t.Fatalf("Records(%q, %q, %d): %v", status, cursor, limit, err)
			}
			var page []int
			for _, r := range list {
				page = append(page, r.Row)
			}
			got = append(got, page)
			if next == "" {
				return got
			}
			cursor = next
		}
		t.Fatal("Records did not reach its last page in 10 calls")
		return nil
	}
	tests := []struct {
		status string
		limit  int
		want   [][]int
	}{
		{"", 2, [][]int{{2, 3}, {4, 5}, {6}}},
		{"", 5, [][]int{{2, 3, 4, 5, 6}}},
		{"pending", 2, [][]int{{2, 4}, {6}}},
		{"failed", 1, [][]int{{3}, {5}}},
		{"succeeded", 10, [][]int{nil}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("status=%q limit=%d", tt.status, tt.limit), func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, pages(t, tt.status, tt.limit)); diff != "" {
				t.Errorf("rows of each page (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("result", func(t *testing.T) {
		t.Parallel()
		list, _, err := e.svc.Records(ctx, batch.ID, "failed", "", 1)
		if err != nil {
			t.Fatal(err)
		}
		code, msg := "E1", "bad token"
		want := []Result{{Row: 3, ExternalID: ids[1], Status: "failed", ErrorCode: &code, ErrorMessage: &msg, Attempts: 1, ProcessedAt: &processed}}
		if diff := cmp.Diff(want, list); diff != "" {
			t.Errorf("Records (-want +got):\n%s", diff)
		}
	})

	t.Run("bad cursor", func(t *testing.T) {
		t.Parallel()
		for _, cursor := range []string{
			"not a cursor!",
			base64.RawURLEncoding.EncodeToString([]byte("page:3")),
			base64.RawURLEncoding.EncodeToString([]byte("row:three")),
		} {
			if _, _, err := e.svc.Records(ctx, batch.ID, "", cursor, 10); !errors.Is(err, ErrBadCursor) {
				t.Errorf("Records with cursor %q: %v, want %v", cursor, err, ErrBadCursor)
			}
		}
	})
}

// TestCancel: cancelling stops the records never sent to Sumsub and records
// one batch.cancelled event; a finished batch cannot be cancelled.
func TestCancel(t *testing.T) {
	t.Parallel()
	e := newServiceEnv(t)
	ctx, business := e.business(t, "acme")
	ids := e.entities(t, ctx, 4)

	t.Run("in progress", func(t *testing.T) {
		t.Parallel()
		batch := e.upload(t, ctx, "key-running", rowsFile(ids)) // rows 2 to 5
		// Row 3 has a call to Sumsub in flight and row 4 has succeeded (and
		// is counted): neither may be cancelled.
		e.exec(t, `UPDATE batches SET status = 'in_progress', started_at = now() WHERE id = $1`, batch.ID)
		e.exec(t, `UPDATE batch_records SET attempts = 1 WHERE batch_id = $1 AND row_number = 3`, batch.ID)
		e.exec(t, `UPDATE batch_records SET status = 'succeeded', attempts = 1, processed_at = now() WHERE batch_id = $1 AND row_number = 4`, batch.ID)
		e.exec(t, `INSERT INTO batch_counters (batch_id, slot, succeeded) VALUES ($1, 4, 1)`, batch.ID)

		got, err := e.svc.Cancel(ctx, batch.ID)
		if err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		want := Status{Batch: Batch{ID: batch.ID, BusinessID: business, Provider: "sumsub", Status: "cancelled", Total: 4, Succeeded: 1, Cancelled: 2}}
		ignoreTimes := cmpopts.IgnoreFields(Batch{}, "CreatedAt", "UpdatedAt", "StartedAt", "CompletedAt")
		if diff := cmp.Diff(want, got, ignoreTimes, cmpopts.IgnoreFields(Status{}, "FileRetainedUntil"), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Cancel (-want +got):\n%s", diff)
		}
		if got.CompletedAt == nil {
			t.Error("Cancel left CompletedAt nil; a cancelled batch is finished")
		}

		// A cancelled record's share token is of no more use and is dropped.
		type recordState struct {
			Row        int
			Status     string
			ShareToken *string
		}
		var records []recordState
		rows, err := e.pool.Query(t.Context(), `SELECT row_number, status, share_token FROM batch_records WHERE batch_id = $1 ORDER BY row_number`, batch.ID)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var r recordState
			if err := rows.Scan(&r.Row, &r.Status, &r.ShareToken); err != nil {
				t.Fatal(err)
			}
			records = append(records, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		share1, share2 := "share-1", "share-2"
		wantRecords := []recordState{{2, "cancelled", nil}, {3, "pending", &share1}, {4, "succeeded", &share2}, {5, "cancelled", nil}}
		if diff := cmp.Diff(wantRecords, records); diff != "" {
			t.Errorf("records after Cancel (-want +got):\n%s", diff)
		}

		countEvents := `SELECT count(*) FROM events WHERE type = 'batch.cancelled' AND subject = $1 AND business_id = $2`
		if n := e.count(t, countEvents, batch.ID.String(), business); n != 1 {
			t.Errorf("%d batch.cancelled events recorded, want 1", n)
		}
		if _, err := e.inspector.GetTaskInfo(event.Queue, "event:batch.cancelled:"+batch.ID.String()); err != nil {
			t.Errorf("the event's dispatch was not announced: %v", err)
		}

		// Cancelling again answers the batch as it is and records nothing.
		again, err := e.svc.Cancel(ctx, batch.ID)
		if err != nil {
			t.Fatalf("second Cancel: %v", err)
		}
		if diff := cmp.Diff(got, again); diff != "" {
			t.Errorf("second Cancel (-first +second):\n%s", diff)
		}
		if n := e.count(t, countEvents, batch.ID.String(), business); n != 1 {
			t.Errorf("after a second Cancel, %d batch.cancelled events recorded, want 1", n)
		}
	})

	for _, status := range []string{"completed", "failed"} {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			batch := e.upload(t, ctx, "key-"+status, rowsFile(ids))
			e.exec(t, `UPDATE batches SET status = $2, completed_at = now() WHERE id = $1`, batch.ID, status)

			if _, err := e.svc.Cancel(ctx, batch.ID); !errors.Is(err, ErrBatchFinished) {
				t.Fatalf("Cancel: %v, want %v", err, ErrBatchFinished)
			}
			if n := e.count(t, `SELECT count(*) FROM batch_records WHERE batch_id = $1 AND status <> 'pending'`, batch.ID); n != 0 {
				t.Errorf("Cancel of a %s batch changed %d records, want none", status, n)
			}
			if n := e.count(t, `SELECT count(*) FROM events WHERE subject = $1`, batch.ID.String()); n != 0 {
				t.Errorf("Cancel of a %s batch recorded %d events, want none", status, n)
			}
		})
	}
}
