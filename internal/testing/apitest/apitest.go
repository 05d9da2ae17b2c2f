// Package apitest runs the whole of kycbatch for end-to-end tests: the API
// over real HTTP on a fresh database, a Redis database of its own, an
// in-memory S3 server and the Sumsub simulator, with workers started on
// demand. Only tests import it.
package apitest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/api"
	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/httpapi"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/pgbouncertest"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
	"github.com/kycbatch/kycbatch/internal/testing/s3test"
	"github.com/kycbatch/kycbatch/internal/worker"
)

// Options tune the environment; zero values take the defaults in New.
type Options struct {
	SumsubRate        int           // requests per second, enforced by the limiter and the simulator (default 50)
	SimLatency        time.Duration // the simulator's answer time
	ReconcileInterval time.Duration // default 1 h: tests run the reconciler when they mean to
	Monitoring        bool          // mount the Asynq dashboard, with the credentials in Config.Monitoring
	// ProductionPool opens the production pool (database.PoolSize) instead of
	// pgx's default of 4 connections: benchmarks of the pipeline's
	// throughput want it; tests of timing keep the smaller pool, under which
	// two workers in one race-detector process stay inside the limiter's margin.
	ProductionPool bool
	// BlockPrivateWebhookURLs refuses webhook endpoints on loopback and
	// private addresses, as production does (tests allow them by default:
	// their receivers listen on 127.0.0.1).
	BlockPrivateWebhookURLs bool
	// WebhookRetryBase is the first wait of the webhook retry schedule (default 20 ms).
	WebhookRetryBase time.Duration
	// SumsubWebhook mounts POST /webhooks/sumsub with WebhookSecret and has
	// the simulator send its review webhooks there, WebhookDelay after import.
	SumsubWebhook bool
	// SumsubProbeInterval is the longest wait between probes of Sumsub
	// while the circuit is open (default 30 s).
	SumsubProbeInterval time.Duration
	// SumsubSecretKey is the secret the workers sign with (default the
	// simulator's: another one is a wrong secret).
	SumsubSecretKey string
	// APIRateLimit is each business's request rate (default a million a
	// second: tests and benchmarks that mean to meet the limit set it).
	APIRateLimit int
	// UploadMaxConcurrent is how many uploads of a business the API takes at
	// once (default 1,000: tests of many uploads at once are not about it);
	// UploadMaxInflightBytes the bytes of all (default the production 64 MiB).
	UploadMaxConcurrent    int
	UploadMaxInflightBytes int64
	// DeleteUploadsAtOnce sets UPLOAD_RETENTION to 0: the reconciler deletes
	// a batch's raw upload as soon as the batch is final (default 168h).
	DeleteUploadsAtOnce bool
	// PgBouncer puts a PgBouncer in transaction pooling mode between the
	// API and workers and PostgreSQL (pgbouncertest), as a large deployment
	// does; the migrations ran directly, as DATABASE_MIGRATE_URL does.
	PgBouncer bool
	// SimClockAhead sets the simulator's clock ahead of this machine's
	// (negative: behind), as Sumsub's would be of a worker's clock gone wrong.
	SimClockAhead time.Duration
}

// WebhookSecret signs Sumsub's webhooks in tests with Options.SumsubWebhook;
// WebhookDelay is how long after an import the simulator sends one (long
// enough for the worker to link the applicant to its entity first).
const (
	WebhookSecret = "test-webhook-secret"
	WebhookDelay  = 2 * time.Second
)

// Env is a running kycbatch.
type Env struct {
	URL       string
	Pool      *pgxpool.Pool
	Files     *storage.Store
	Redis     *redis.Client
	Inspector *asynq.Inspector
	Keys      *auth.Store
	Logs      *LogBuffer
	Sim       *sumsubsim.Server
	// API is the API's configuration, Worker the workers'.
	API    config.API
	Worker config.Worker
	// App is the API's; workers share its metrics, as in the dev server.
	App *app.App
}

// The simulator's credentials in tests.
const (
	simAppToken = "sbx:test-app-token"
	// SimSecretKey is the secret the simulator checks signatures with.
	SimSecretKey = "test-secret-key"
)

// New starts the API (no worker: see StartWorker).
func New(tb testing.TB, opts Options) *Env {
	tb.Helper()
	if opts.SumsubRate == 0 {
		opts.SumsubRate = 50
	}
	if opts.ReconcileInterval == 0 {
		opts.ReconcileInterval = time.Hour
	}
	ctx := context.Background()
	redisURL := redistest.URL(tb)
	rdb, err := app.OpenRedis(ctx, redisURL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rdb.Close() })
	sim := sumsubsim.New(sumsubsim.Config{AppToken: simAppToken, SecretKey: SimSecretKey, RateLimit: opts.SumsubRate, Latency: opts.SimLatency,
		Now: func() time.Time { return time.Now().Add(opts.SimClockAhead) }})
	simSrv := httptest.NewServer(sim)
	tb.Cleanup(simSrv.Close)

	// The defaults, as the binaries read them, with the environment's services.
	env := map[string]string{
		"REDIS_URL":                          redisURL,
		"API_RATE_LIMIT":                     strconv.Itoa(cmp.Or(opts.APIRateLimit, 1000000)),
		"UPLOAD_MAX_CONCURRENT_PER_BUSINESS": strconv.Itoa(cmp.Or(opts.UploadMaxConcurrent, 1000)),
		"UPLOAD_MAX_INFLIGHT_BYTES":          strconv.FormatInt(cmp.Or(opts.UploadMaxInflightBytes, 64<<20), 10),
		"SUMSUB_BASE_URL":                    simSrv.URL, "SUMSUB_APP_TOKEN": simAppToken, "SUMSUB_SECRET_KEY": cmp.Or(opts.SumsubSecretKey, SimSecretKey),
		"SUMSUB_PROBE_INTERVAL":      cmp.Or(opts.SumsubProbeInterval, 30*time.Second).String(),
		"SUMSUB_RATE_LIMIT":          strconv.Itoa(opts.SumsubRate),
		"RECONCILE_INTERVAL":         opts.ReconcileInterval.String(),
		"WEBHOOK_ALLOW_PRIVATE_URLS": strconv.FormatBool(!opts.BlockPrivateWebhookURLs),
		"WEBHOOK_RETRY_BASE":         cmp.Or(opts.WebhookRetryBase, 20*time.Millisecond).String(),
		"UPLOAD_RETENTION":           map[bool]string{true: "0s", false: "168h"}[opts.DeleteUploadsAtOnce],
	}
	if opts.Monitoring {
		env["MONITORING_USER"], env["MONITORING_PASSWORD"] = "ops", "test-ops-password"
	}
	if opts.SumsubWebhook {
		env["SUMSUB_WEBHOOK_SECRET"] = WebhookSecret
	}
	getenv := func(k string) string { return env[k] }
	apiCfg, err := config.LoadAPI(getenv)
	if err != nil {
		tb.Fatal(err)
	}
	workerCfg, err := config.LoadWorker(getenv)
	if err != nil {
		tb.Fatal(err)
	}
	// pgx's default pool, or the production one (its connections open as needed).
	var poolSize int32
	if opts.ProductionPool {
		poolSize = database.WorkerPoolSize(workerCfg.Concurrency)
	}
	dbURL := dbtest.URL(tb)
	if opts.PgBouncer {
		dbURL = pgbouncertest.URL(tb, dbURL)
	}
	pool, err := database.Open(ctx, dbURL, poolSize)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)

	logs := &LogBuffer{}
	e := &Env{
		Pool: pool, Files: s3test.Store(tb), Redis: rdb, Inspector: asynq.NewInspectorFromRedisClient(rdb),
		Keys: auth.NewStore(pool), Logs: logs, Sim: sim, API: apiCfg, Worker: workerCfg,
	}
	e.App = app.New(pool, rdb, e.Files, app.Options{
		SumsubRateLimit: apiCfg.SumsubRateLimit, ReportLinkTTL: apiCfg.ReportLinkTTL, ReportMaxPending: apiCfg.ReportMaxPending,
		UploadRetention: apiCfg.UploadRetention,
	}, e.Logger())
	handler := httpapi.New(e.App, apiCfg)
	// The production server's limits and timeouts, on a test listener.
	srv := httptest.NewUnstartedServer(handler)
	srv.Config = app.HTTPServer(handler, e.Logger())
	srv.Start()
	tb.Cleanup(srv.Close)
	e.URL = srv.URL
	if opts.SumsubWebhook {
		sim.SetWebhook(sumsubsim.Webhook{URL: e.URL + "/webhooks/sumsub", Secret: WebhookSecret, Delay: WebhookDelay})
		tb.Cleanup(sim.Close) // before srv.Close: no webhook is left in flight
	}
	return e
}

// Logger logs into Logs, so tests can check what was logged.
func (e *Env) Logger() *slog.Logger {
	return logging.New(e.Logs, slog.LevelDebug)
}

// DatabaseURL is the URL of the environment's own database, for tools that
// connect by themselves (psql).
func (e *Env) DatabaseURL() string {
	return e.Pool.Config().ConnString()
}

// StartWorker starts a worker process's worth of kycbatch (its own Redis
// client, limiter and Asynq server, on the environment's database, S3 and
// metrics) and returns a function that stops it; shutdown bounds how long
// running tasks may finish (a tiny one is a crash). The worker also stops
// when the test ends.
func (e *Env) StartWorker(tb testing.TB, shutdown time.Duration) (stop func()) {
	tb.Helper()
	stop, _ = e.StartCountedWorker(tb, shutdown)
	return stop
}

// StartCountedWorker starts a worker as StartWorker does, and returns also
// how many Redis commands it has sent so far (every command of its client:
// the pipeline's, the limiter's, Asynq's).
func (e *Env) StartCountedWorker(tb testing.TB, shutdown time.Duration) (stop func(), commands func() int64) {
	tb.Helper()
	rdb := redis.NewClient(e.Redis.Options())
	var counter commandCounter
	rdb.AddHook(&counter)
	cfg := e.Worker
	cfg.ShutdownTimeout = shutdown
	a := app.New(e.Pool, rdb, e.Files, app.Options{
		SumsubRateLimit: cfg.Sumsub.RateLimit, ReportLinkTTL: cfg.ReportLinkTTL, SumsubProbeInterval: cfg.Sumsub.ProbeInterval,
		UploadRetention: cfg.UploadRetention,
		Metrics:         e.App.Metrics,
	}, e.Logger())
	w, err := worker.New(a, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("worker: %v", err)
			}
			rdb.Close()
		})
	}
	tb.Cleanup(stop)
	return stop, counter.n.Load
}

// commandCounter is a go-redis hook that counts the commands sent.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// Business creates a business with a fresh API key.
func (e *Env) Business(tb testing.TB) (key string, id uuid.UUID) {
	tb.Helper()
	ctx := context.Background()
	id, err := e.Keys.EnsureBusiness(ctx, "biz-"+uuid.NewString())
	if err != nil {
		tb.Fatal(err)
	}
	key = auth.NewKey()
	if err := e.Keys.AddKey(ctx, id, key); err != nil {
		tb.Fatal(err)
	}
	return key, id
}

// Response is what a request got back.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map for field checks.
func (r Response) JSON(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		tb.Fatalf("body is not a JSON object: %v\n%s", err, r.Body)
	}
	return m
}

// Do sends req and reads the whole answer.
func (e *Env) Do(tb testing.TB, req *http.Request) Response {
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
	checkContract(tb, req, res, body)
	return Response{Status: res.StatusCode, Header: res.Header, Body: body}
}

var (
	contractOnce   sync.Once
	contractRouter routers.Router
	contractErr    error
)

// checkContract holds every response of a documented route to
// api/openapi.yaml (status, headers, body), so the spec cannot drift from
// what the service answers.
func checkContract(tb testing.TB, req *http.Request, res *http.Response, body []byte) {
	tb.Helper()
	contractOnce.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
		if err != nil {
			contractErr = err
			return
		}
		doc.Servers = nil // match the test server's address
		contractRouter, contractErr = gorillamux.NewRouter(doc)
	})
	if contractErr != nil {
		tb.Fatalf("api/openapi.yaml: %v", contractErr)
	}
	route, params, err := contractRouter.FindRoute(req)
	if err != nil {
		return // not a documented route: nothing to hold it to
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 res.StatusCode,
		Header:                 res.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		tb.Errorf("%s %s answered %d, which api/openapi.yaml does not describe: %v\n%s", req.Method, req.URL.Path, res.StatusCode, err, body)
	}
}

// Call sends a JSON request (body may be nil) with the key as a Bearer token.
func (e *Env) Call(tb testing.TB, method, path, key string, body any) Response {
	tb.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.URL+path, r)
	if err != nil {
		tb.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	return e.Do(tb, req)
}

// UploadRequest builds a batch upload of csv in form field "file", with the
// contract's headers; headers may override or (with "") remove them.
func (e *Env) UploadRequest(tb testing.TB, key, idempotencyKey string, csv []byte, headers map[string]string) *http.Request {
	tb.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "batch.csv")
	if err != nil {
		tb.Fatal(err)
	}
	fw.Write(csv)
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, e.URL+"/entity/kyc/import/batch", &body)
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

// Upload uploads csv with the contract's headers.
func (e *Env) Upload(tb testing.TB, key, idempotencyKey string, csv []byte) Response {
	tb.Helper()
	return e.Do(tb, e.UploadRequest(tb, key, idempotencyKey, csv, nil))
}

// UploadBatch uploads csv and returns the new batch's id, failing the test otherwise.
func (e *Env) UploadBatch(tb testing.TB, key string, csv []byte) string {
	tb.Helper()
	r := e.Upload(tb, key, uuid.NewString(), csv)
	if r.Status != http.StatusCreated {
		tb.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	return r.JSON(tb)["batchId"].(string)
}

// Entities creates n entities of the business and returns their external ids.
func (e *Env) Entities(tb testing.TB, key string, n int) []uuid.UUID {
	tb.Helper()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.New()
		if r := e.Call(tb, http.MethodPost, "/entity", key, map[string]string{"externalId": ids[i].String(), "type": "INDIVIDUAL"}); r.Status != http.StatusCreated {
			tb.Fatalf("create entity: %d %s", r.Status, r.Body)
		}
	}
	return ids
}

// WaitBatch polls the batch until its status is final and returns its last
// body; the test fails if that takes longer than timeout.
func (e *Env) WaitBatch(tb testing.TB, key, batchID string, timeout time.Duration) map[string]any {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := e.Call(tb, http.MethodGet, "/entity/kyc/import/batch/"+batchID, key, nil)
		if r.Status != http.StatusOK {
			tb.Fatalf("batch status: %d %s", r.Status, r.Body)
		}
		b := r.JSON(tb)
		switch b["status"] {
		case "completed", "failed", "cancelled":
			return b
		}
		if time.Now().After(deadline) {
			tb.Fatalf("batch %s not finished after %s: %s", batchID, timeout, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stored counts the batches and records of a business in PostgreSQL and its
// raw uploads in S3: after a refused upload all three must be unchanged.
func (e *Env) Stored(tb testing.TB, business uuid.UUID) (batches, records, objects int) {
	tb.Helper()
	ctx := context.Background()
	err := e.Pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM batches WHERE business_id = $1),
		       (SELECT count(*) FROM batch_records r JOIN batches b ON b.id = r.batch_id WHERE b.business_id = $1)`,
		business).Scan(&batches, &records)
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := e.Files.Keys(ctx, fmt.Sprintf("uploads/%s/", business))
	if err != nil {
		tb.Fatal(err)
	}
	return batches, records, len(keys)
}

// CSVFile builds a file with a header and one row per external id; the share
// token of row i (a spreadsheet row, from 2) is Token(prefix, i).
func CSVFile(prefix string, ids []uuid.UUID) []byte {
	var b strings.Builder
	b.WriteString("externalId,shareToken\n")
	for i, id := range ids {
		fmt.Fprintf(&b, "%s,%s\n", id, Token(prefix, i+2))
	}
	return []byte(b.String())
}

// Token is the share token CSVFile puts on a row.
func Token(prefix string, row int) string {
	return fmt.Sprintf("%s_act-sbx-jwt-%d-%s", prefix, row, strings.Repeat("x", 40))
}

// LogBuffer keeps what a server logged; its goroutines write concurrently.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Scrape reads the API's /metrics into the value of each series.
func (e *Env) Scrape(tb testing.TB) map[string]float64 {
	tb.Helper()
	res, err := http.Get(e.URL + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	values := make(map[string]float64)
	for _, line := range strings.Split(string(b), "\n") {
		i := strings.LastIndexByte(line, ' ') // label values may hold spaces, the value does not
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			values[line[:i]] = v
		}
	}
	return values
}
