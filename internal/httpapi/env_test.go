package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/database/dbtest"
	"github.com/kycbatch/kycbatch/internal/httpapi"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/redistest"
	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/storage/s3test"
)

// env is the whole API over real HTTP, on a fresh database, a Redis database
// of its own and an in-memory S3 server.
type env struct {
	url       string
	pool      *pgxpool.Pool
	files     *storage.Store
	inspector *asynq.Inspector
	keys      *auth.Store
	logs      *logBuffer
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	ctx := context.Background()
	pool := dbtest.Pool(tb)
	rdb, err := app.OpenRedis(ctx, redistest.URL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rdb.Close() })
	files := s3test.Store(tb)
	logs := &logBuffer{}
	handler := httpapi.NewServer(httpapi.Deps{
		Logger: logging.New(logs, slog.LevelDebug),
		Pool:   pool,
		Files:  files,
		Queue:  asynq.NewClientFromRedisClient(rdb),
	})
	srv := httptest.NewServer(handler)
	tb.Cleanup(srv.Close)
	return &env{url: srv.URL, pool: pool, files: files, inspector: asynq.NewInspectorFromRedisClient(rdb), keys: auth.NewStore(pool), logs: logs}
}

// business creates a business with a fresh API key.
func (e *env) business(tb testing.TB) (key string, id uuid.UUID) {
	tb.Helper()
	ctx := context.Background()
	id, err := e.keys.EnsureBusiness(ctx, "biz-"+uuid.NewString())
	if err != nil {
		tb.Fatal(err)
	}
	key = auth.NewKey()
	if err := e.keys.AddKey(ctx, id, key); err != nil {
		tb.Fatal(err)
	}
	return key, id
}

// response is what a request got back.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a map for field checks.
func (r response) json(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		tb.Fatalf("body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

func (e *env) do(tb testing.TB, req *http.Request) response {
	tb.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: body}
}

// call sends a JSON request (body may be nil) with the key as a Bearer token.
func (e *env) call(tb testing.TB, method, path, key string, body any) response {
	tb.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.url+path, r)
	if err != nil {
		tb.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	return e.do(tb, req)
}

// uploadRequest builds a batch upload of csv in form field "file", with the
// contract's headers; headers may override or (with "") remove them.
func (e *env) uploadRequest(tb testing.TB, key, idempotencyKey string, csv []byte, headers map[string]string) *http.Request {
	tb.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "batch.csv")
	if err != nil {
		tb.Fatal(err)
	}
	fw.Write(csv)
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, e.url+"/entity/kyc/import/batch", &body)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-Provider", "sumsub")
	req.Header.Set("Idempotency-Key", idempotencyKey)
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return req
}

func (e *env) upload(tb testing.TB, key, idempotencyKey string, csv []byte) response {
	tb.Helper()
	return e.do(tb, e.uploadRequest(tb, key, idempotencyKey, csv, nil))
}

// entities creates n entities of the business and returns their external ids.
func (e *env) entities(tb testing.TB, key string, n int) []uuid.UUID {
	tb.Helper()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.New()
		if r := e.call(tb, http.MethodPost, "/entity", key, map[string]string{"externalId": ids[i].String(), "type": "INDIVIDUAL"}); r.status != http.StatusCreated {
			tb.Fatalf("create entity: %d %s", r.status, r.body)
		}
	}
	return ids
}

// stored counts the batches and records of a business in PostgreSQL and its
// raw uploads in S3: after a refused upload all three must be zero.
func (e *env) stored(tb testing.TB, business uuid.UUID) (batches, records, objects int) {
	tb.Helper()
	ctx := context.Background()
	err := e.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM batches WHERE business_id = $1),
		       (SELECT count(*) FROM batch_records r JOIN batches b ON b.id = r.batch_id WHERE b.business_id = $1)`,
		business).Scan(&batches, &records)
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := e.files.Keys(ctx, fmt.Sprintf("uploads/%s/", business))
	if err != nil {
		tb.Fatal(err)
	}
	return batches, records, len(keys)
}

// csvFile builds a file with a header and one row per external id, with a
// distinct share token on each row.
func csvFile(ids []uuid.UUID) []byte {
	var b strings.Builder
	b.WriteString("externalId,shareToken\n")
	for i, id := range ids {
		fmt.Fprintf(&b, "%s,_act-sbx-jwt-%d-%s\n", id, i, strings.Repeat("x", 40))
	}
	return []byte(b.String())
}

// logBuffer keeps what the server logged; its goroutines write concurrently.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// cmpSorted compares string slices as sets.
var cmpSorted = cmpopts.SortSlices(func(a, b string) bool { return a < b })

func stringsReader(s string) io.Reader { return strings.NewReader(s) }
