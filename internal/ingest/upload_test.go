package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/kycbatch/kycbatch/internal/schedule"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/s3test"
)

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
			pick, ok, _, err := e.sched.Next(context.Background(), 1, 100)
			want := schedule.Pick{Business: business, Batch: got.ID, Count: 1, Last: i == 2}
			if err != nil || !ok || pick != want {
				t.Fatalf("pick %d: %+v, %v, %v; want %+v", i, pick, ok, err, want)
			}
		}
		if pick, ok, _, err := e.sched.Next(context.Background(), 1, 100); err != nil || ok {
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
	pick, ok, _, err := e.sched.Next(context.Background(), 1, 100)
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
	if pick, ok, _, err := e.sched.Next(context.Background(), 1, 100); err != nil || ok {
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
