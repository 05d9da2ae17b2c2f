package ingest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
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

const (
	id1 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	id2 = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
	id3 = "6ba7b812-9dad-11d1-80b4-00c04fd430c8"

	header     = "externalId,shareToken\n"
	fullHeader = "externalId,shareToken,applicantLevel,cardProcessorPublicToken\n"
)

// parse parses in whole and one byte at a time, requires both to agree, and
// returns the result.
func parse(t testing.TB, in string) Parsed {
	t.Helper()
	got, err := ParseCSV(strings.NewReader(in))
	if err != nil {
		t.Fatalf("ParseCSV: %v", err)
	}
	bytewise, err := ParseCSV(iotest.OneByteReader(strings.NewReader(in)))
	if err != nil {
		t.Fatalf("ParseCSV, one byte at a time: %v", err)
	}
	if diff := cmp.Diff(got, bytewise); diff != "" {
		t.Fatalf("ParseCSV differs when read one byte at a time (-whole +bytewise):\n%s", diff)
	}
	return got
}

// testID returns a distinct, valid external id for each i.
func testID(i int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
}

// testToken returns a share token of realistic length (about 250 bytes).
func testToken(i int) string {
	return fmt.Sprintf("_act-sbx-jwt-%06d-", i) + strings.Repeat("eyJhbGciOiJIUzI1NiJ9", 12)
}

// batchFile returns a valid file with rows data rows.
func batchFile(rows int) string {
	var b strings.Builder
	b.WriteString(fullHeader)
	for i := range rows {
		fmt.Fprintf(&b, "%s,%s,basic-kyc-level,card-%d\n", testID(i), testToken(i), i)
	}
	return b.String()
}

// badRows returns a file whose n data rows each lack a share token.
func badRows(n int) string {
	var b strings.Builder
	b.WriteString(header)
	for i := range n {
		b.WriteString(testID(i) + ",\n")
	}
	return b.String()
}

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
	svc := NewService(ServiceConfig{Pool: pool, Files: files, Schedule: sched, Outbox: event.NewOutbox(queue, logger), Logger: logger, Rate: 10, UploadRetention: time.Hour})
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
