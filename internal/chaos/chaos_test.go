package chaos

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/storage/s3local"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
	"github.com/kycbatch/kycbatch/internal/testing/proctest"
)

// batchShares split the records over the suite's five batches; batch i
// belongs to business i%3, and the last is uploaded during the PostgreSQL outage.
var batchShares = []float64{0.3, 0.25, 0.2, 0.15, 0.1}

const businesses = 3

// TestChaos runs batches through the real processes while it injects faults,
// then checks that nothing was lost, doubled or half-written. Sumsub's
// outages last CHAOS_OUTAGE_SECONDS (the 503 one twice as long).
func TestChaos(t *testing.T) {
	records, rate := envInt(t, "CHAOS_RECORDS", 400), envInt(t, "CHAOS_RATE", 50)
	outage := time.Duration(envInt(t, "CHAOS_OUTAGE_SECONDS", 3)) * time.Second
	ctx := context.Background()
	pg := startPostgres(t)
	pg.createDatabase(t, "kycbatch")
	redisURL, rdb := startRedis(t)
	// The simulator: 10% 503s, a 429 burst of 500 ms every 7 s, and 1% of
	// imports answered after 5 s, past the workers' 3 s timeout: those
	// answers are lost. Its outages come later, at run time.
	svc := startService(t, pg.url("kycbatch"), redisURL, rate,
		"-fail-rate", "0.1", "-stall-rate", "0.01", "-stall", "5s", "-burst-every", "7s", "-burst-for", "500ms")
	c, keys, simURL, workers, files := svc.c, svc.keys, svc.simURL, svc.workers, svc.files

	// The files: mostly tokens Sumsub imports, some it refuses.
	plans := make([]batchPlan, len(batchShares))
	for i, share := range batchShares {
		plans[i] = newPlan(t, c, keys[i%businesses], i, int(share*float64(records)))
	}
	for i := range plans[:len(plans)-1] {
		plans[i].id = c.mustUpload(t, plans[i])
	}

	// The faults, spread over the time the records take at the rate.
	expected := time.Duration(records) * time.Second / time.Duration(rate)
	var log faultLog
	start := time.Now()
	at := func(frac float64) { time.Sleep(time.Until(start.Add(time.Duration(frac * float64(expected))))) }
	// The faults run on the test's goroutine, in order, while the processes work.
	// Between faults, records flow for a while (expected/20) once the
	// circuit is closed again.
	outages := &outageLog{sim: simURL, api: c.base, settle: expected / 20}
	at(0.1)
	workers[0].kill(t)
	time.Sleep(time.Second)
	workers[0].start(t)
	log.add("worker 1 killed with SIGKILL, restarted after 1 s")

	at(0.2)
	outages.run(t, sumsubsim.Outage503, 2*outage, "Sumsub down: 503 on every request")

	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Errorf("flush Redis: %v", err)
	}
	log.add("Redis flushed (FLUSHALL): queues, retries and limiter state lost")

	outages.run(t, sumsubsim.Outage401, outage, "Sumsub refuses our signature (a rotated secret): 401 on every request")

	at(0.55)
	pg.crash(t)
	last := &plans[len(plans)-1]
	status, _ := c.upload(last)
	time.Sleep(2 * time.Second)
	pg.start(t)
	last.id = c.mustUpload(t, *last) // the client retries with the same Idempotency-Key
	log.add(fmt.Sprintf("PostgreSQL crashed (immediate stop) for 2 s; an upload then got %d, and 201 on retry", status))
	if status < 500 {
		t.Errorf("upload during the PostgreSQL outage: %d, want a 5xx", status)
	}

	outages.run(t, sumsubsim.OutageTimeout, outage, "Sumsub silent: no answer to any request (the calls' 3 s timeout)")

	at(0.75)
	workers[1].kill(t)
	time.Sleep(time.Second)
	workers[1].start(t)
	log.add("worker 2 killed with SIGKILL, restarted after 1 s")
	deadline := 4*expected + 90*time.Second + outages.took
	for _, p := range plans {
		if !c.waitDone(t, p, deadline-time.Since(start)) {
			logUnfinished(t, pg.url("kycbatch"), rdb, p.id)
			t.FailNow()
		}
	}
	took := time.Since(start)

	stats := simStats(t, simURL)
	tokens := simTokens(t, simURL)
	pool, err := pgxpool.New(ctx, pg.url("kycbatch"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	unknown, stalled := checkRecords(t, pool, plans, tokens)
	checkStorage(t, pool, files, plans)
	checkReports(t, c, plans)

	var table strings.Builder
	w := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "fault\tinjected\tsurvived\n")
	for _, f := range log {
		fmt.Fprintf(w, "%s\t1\t%s\n", f, survived(t))
	}
	fmt.Fprintf(w, "Sumsub 503 (nothing imported)\t%d\t%s\n", stats.Injected503, survived(t))
	fmt.Fprintf(w, "Sumsub 429 bursts (500 ms every 7 s)\t%d requests\t%s\n", stats.Burst429, survived(t))
	fmt.Fprintf(w, "Sumsub 5 s stalls (imported, answer after the 3 s timeout)\t%d (%d answers lost)\t%s\n", stats.Stalls, stats.LostAnswers, survived(t))
	fmt.Fprintf(w, "Sumsub 429 from the rate limit itself\t%d\t\n", stats.Rejected429)
	for _, o := range outages.list {
		fmt.Fprintf(w, "%s for %s: %d requests taken (before the circuit opened %d), circuit closed %.1f s after its end\t1\t%s\n",
			o.what, o.length, o.answers, o.beforeOpen, o.recovery.Seconds(), survived(t))
	}
	w.Flush()
	t.Logf("%d records in %d batches of %d businesses at %d/s: done in %s (%.1f s without faults); "+
		"%d SUMSUB_OUTCOME_UNKNOWN: %d answers lost in a stall, %d in a killed worker\n%s",
		records, len(plans), businesses, rate, took.Round(100*time.Millisecond), expected.Seconds(),
		unknown, stalled, unknown-stalled, table.String())
}

func survived(t *testing.T) string {
	if t.Failed() {
		return "NO"
	}
	return "yes"
}

// service is kycbatch as production runs it, in separate processes: the
// Sumsub simulator, the API and two workers, with S3 in the suite's process
// (none of the faults is S3's), and three businesses with a key each.
type service struct {
	c       *client
	keys    []string
	simURL  string
	workers []*proc
	files   *storage.Store
}

// startService starts the service on the migrated or empty database at
// dbURL and the Redis at redisURL, Sumsub's limit rate; simArgs are the
// simulator's faults.
func startService(t *testing.T, dbURL, redisURL string, rate int, simArgs ...string) *service {
	t.Helper()
	ctx := context.Background()
	apiBin, workerBin, simBin := proctest.Build(t, "../../cmd/api"), proctest.Build(t, "../../cmd/worker"), proctest.Build(t, "../../cmd/sumsubsim")
	s3srv := httptest.NewServer(s3local.InMemory())
	t.Cleanup(s3srv.Close)
	s3cfg := s3local.Config(s3srv.URL, "kycbatch-chaos")
	files, err := storage.New(ctx, s3cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := files.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}

	simAddr := proctest.FreeAddr(t)
	sim := newProc(t, "sumsubsim", nil, append([]string{simBin, "-addr", simAddr, "-rate", strconv.Itoa(rate), "-latency", "5ms", "-seed", "1"}, simArgs...)...)
	sim.start(t)
	simURL := "http://" + simAddr
	waitReady(t, simURL+"/_sim/stats")

	apiAddr := proctest.FreeAddr(t)
	env := []string{
		"DATABASE_URL=" + dbURL, "REDIS_URL=" + redisURL,
		"S3_ENDPOINT=" + s3srv.URL, "S3_BUCKET=" + s3cfg.Bucket, "S3_REGION=" + s3cfg.Region, "S3_FORCE_PATH_STYLE=true",
		"AWS_ACCESS_KEY_ID=kycbatch-dev", "AWS_SECRET_ACCESS_KEY=kycbatch-dev-secret",
		"SUMSUB_BASE_URL=" + simURL, "SUMSUB_APP_TOKEN=" + sumsubsim.DevAppToken, "SUMSUB_SECRET_KEY=" + sumsubsim.DevSecretKey,
		"SUMSUB_RATE_LIMIT=" + strconv.Itoa(rate), "SUMSUB_TIMEOUT=" + callTimeout.String(), "SUMSUB_PROBE_INTERVAL=" + probeInterval.String(),
		"RECONCILE_INTERVAL=2s", "SHUTDOWN_TIMEOUT=2s", "LOG_LEVEL=warn", "HTTP_ADDR=" + apiAddr,
	}
	run(t, env, apiBin, "migrate")
	svc := &service{c: &client{base: "http://" + apiAddr}, keys: make([]string, businesses), simURL: simURL, workers: make([]*proc, 2), files: files}
	for i := range svc.keys {
		svc.keys[i] = run(t, env, apiBin, "create-api-key", "--business", fmt.Sprintf("chaos-%d", i))
	}
	api := newProc(t, "api", env, apiBin, "serve")
	api.start(t)
	waitReady(t, svc.c.base+"/readyz")
	for i := range svc.workers {
		addr := proctest.FreeAddr(t)
		svc.workers[i] = newProc(t, fmt.Sprintf("worker %d", i+1), append(env, "WORKER_METRICS_ADDR="+addr), workerBin)
		svc.workers[i].start(t)
		waitReady(t, "http://"+addr+"/readyz")
	}
	return svc
}

// batchPlan is one batch the suite uploads: its file and the share token of each row.
type batchPlan struct {
	key, idempotencyKey string
	file                []byte
	tokens              map[int]string // spreadsheet row → share token
	refused             map[int]bool   // rows whose token Sumsub refuses
	id                  string
}

func newPlan(t *testing.T, c *client, key string, n, size int) batchPlan {
	p := batchPlan{key: key, idempotencyKey: fmt.Sprintf("chaos-%d-%s", n, uuid.NewString()), tokens: map[int]string{}, refused: map[int]bool{}}
	ids := c.entities(t, key, size)
	var b bytes.Buffer
	b.WriteString("externalId,shareToken\n")
	for i, id := range ids {
		row := i + 2
		token := fmt.Sprintf("_act-sbx-jwt-chaos-%d-%d-%s", n, row, strings.Repeat("x", 40))
		if i%25 == 7 {
			token = sumsubsim.PrefixInvalid + token
			p.refused[row] = true
		}
		p.tokens[row] = token
		fmt.Fprintf(&b, "%s,%s\n", id, token)
	}
	p.file = b.Bytes()
	return p
}

// checkRecords checks every batch and record in PostgreSQL against what the
// simulator imported, and returns how many outcomes are unknown, and how
// many of those had their answer lost in a stall the simulator saw.
func checkRecords(t *testing.T, pool *pgxpool.Pool, plans []batchPlan, tokens map[string]simToken) (unknown, stalled int) {
	t.Helper()
	ctx := context.Background()
	for _, p := range plans {
		var status string
		var total, succeeded, failed, counted, rowsSucceeded, rowsFailed, pending, withToken int
		err := pool.QueryRow(ctx, `
			SELECT b.status, b.total_records, b.succeeded_records, b.failed_records,
				count(r.*), count(*) FILTER (WHERE r.status = 'succeeded'), count(*) FILTER (WHERE r.status = 'failed'),
				count(*) FILTER (WHERE r.status = 'pending'), count(*) FILTER (WHERE r.share_token IS NOT NULL)
			FROM batch_progress b JOIN batch_records r ON r.batch_id = b.id WHERE b.id = $1
			GROUP BY b.id, b.status, b.total_records, b.succeeded_records, b.failed_records`, p.id).Scan(&status, &total, &succeeded, &failed, &counted, &rowsSucceeded, &rowsFailed, &pending, &withToken)
		if err != nil {
			t.Fatal(err)
		}
		if status != "completed" || pending != 0 || total != len(p.tokens) || counted != total {
			t.Errorf("batch %s: %s, %d pending, %d records of %d, want completed with %d final records", p.id, status, pending, counted, total, len(p.tokens))
		}
		if succeeded != rowsSucceeded || failed != rowsFailed || succeeded+failed != total {
			t.Errorf("batch %s counters: %d succeeded, %d failed; its records: %d and %d of %d", p.id, succeeded, failed, rowsSucceeded, rowsFailed, total)
		}
		if withToken != 0 {
			t.Errorf("batch %s: %d final records still hold their share token", p.id, withToken)
		}

		rows, err := pool.Query(ctx, `
			SELECT r.row_number, r.status, coalesce(r.error_code, ''), coalesce(r.applicant_id, ''), coalesce(e.sumsub_applicant_id, ''), r.attempts
			FROM batch_records r JOIN batches b ON b.id = r.batch_id
			JOIN entities e ON e.business_id = b.business_id AND e.external_id = r.external_id
			WHERE r.batch_id = $1`, p.id)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var row, attempts int
			var status, code, applicant, entityApplicant string
			if err := rows.Scan(&row, &status, &code, &applicant, &entityApplicant, &attempts); err != nil {
				t.Fatal(err)
			}
			tok := tokens[p.tokens[row]]
			switch {
			case tok.Imports > 1:
				t.Errorf("batch %s row %d: token imported %d times", p.id, row, tok.Imports)
			case status == "succeeded" && (tok.Imports != 1 || applicant == "" || applicant != entityApplicant):
				t.Errorf("batch %s row %d: succeeded with applicant %q (entity %q), token imported %d times", p.id, row, applicant, entityApplicant, tok.Imports)
			case code == "SUMSUB_OUTCOME_UNKNOWN":
				unknown++
				if tok.Lost {
					stalled++
				}
				// Sumsub's used-token refusal after an attempt whose answer
				// the worker never stored. A token Sumsub accepts must have
				// been imported by that attempt. For a token it refuses, the
				// attempt may have died (SIGKILL) before reaching Sumsub: the
				// worker cannot tell, so unknown is the honest answer, but
				// only after such an attempt.
				if (!p.refused[row] && (tok.Imports != 1 || tok.Seen < 2)) || (p.refused[row] && attempts < 2) {
					t.Errorf("batch %s row %d: outcome unknown after %d attempts, but Sumsub saw its token %d times and imported it %d times: no answer was lost",
						p.id, row, attempts, tok.Seen, tok.Imports)
				}
			case status == "failed" && tok.Imports != 0:
				t.Errorf("batch %s row %d: failed with %s, but Sumsub imported its token", p.id, row, code)
			case status == "failed" && !p.refused[row]:
				t.Errorf("batch %s row %d: failed with %s, want imported", p.id, row, code)
			case status == "succeeded" && p.refused[row]:
				t.Errorf("batch %s row %d: succeeded, but Sumsub refuses its token", p.id, row)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return unknown, stalled
}

// checkStorage checks that S3 holds exactly the uploaded files of the batches
// PostgreSQL knows: an upload cut by the outage left no object behind.
func checkStorage(t *testing.T, pool *pgxpool.Pool, files *storage.Store, plans []batchPlan) {
	t.Helper()
	ctx := context.Background()
	objects, err := files.Keys(ctx, "uploads/")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT file_key FROM batches ORDER BY file_key`)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if len(keys) != len(plans) || strings.Join(keys, " ") != strings.Join(objects, " ") {
		t.Errorf("batches' files %v, objects in S3 %v: want the same, one per batch (%d)", keys, objects, len(plans))
	}
}

// checkReports builds each batch's usage report and checks its CSV.
func checkReports(t *testing.T, c *client, plans []batchPlan) {
	t.Helper()
	for _, p := range plans {
		var initiated struct {
			Data struct {
				ClientID string `json:"client_id"`
			} `json:"data"`
		}
		c.mustJSON(t, http.MethodPost, "/api/v1/stamper-v2/bulk-usage-report/initiate", p.key, map[string]string{"client_id": p.id}, &initiated)
		var report struct {
			Data struct {
				Status string         `json:"status"`
				Stats  map[string]int `json:"stats"`
				Link   string         `json:"link"`
			} `json:"data"`
		}
		for deadline := time.Now().Add(30 * time.Second); report.Data.Status != "success"; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("report of batch %s: %s after 30 s", p.id, report.Data.Status)
			}
			c.mustJSON(t, http.MethodGet, "/api/v1/stamper-v2/bulk-usage-report/download?client_id="+initiated.Data.ClientID, p.key, nil, &report)
		}
		res, err := http.Get(report.Data.Link)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := csv.NewReader(res.Body).ReadAll()
		res.Body.Close()
		if err != nil {
			t.Fatalf("report of batch %s: %v", p.id, err)
		}
		s := report.Data.Stats
		if len(lines) != len(p.tokens)+1 || s["pending"] != 0 || s["available"]+s["failed"] != len(p.tokens) {
			t.Errorf("report of batch %s: %d lines, stats %v; want %d records, none pending", p.id, len(lines), s, len(p.tokens))
		}
	}
}

// faultLog lists the faults injected, in order.
type faultLog []string

func (l *faultLog) add(s string) { *l = append(*l, s) }

// client speaks the API over HTTP, as a business's client does.
type client struct{ base string }

func (c *client) do(method, path, key string, body io.Reader, header http.Header) (int, []byte, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = io.ReadAll(body); err != nil {
			return 0, nil, err
		}
	}
	// A 429 (the business's request rate) is checked before anything else
	// the route does: the request is sent again after its Retry-After.
	for {
		req, err := http.NewRequest(method, c.base+path, bytes.NewReader(payload))
		if err != nil {
			return 0, nil, err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		req.Header.Set("X-API-Key", key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("RateLimit") == "" {
			return res.StatusCode, b, err
		}
		wait, _ := strconv.Atoi(res.Header.Get("Retry-After"))
		time.Sleep(time.Duration(max(wait, 1)) * time.Second)
	}
}

// mustJSON sends body as JSON and decodes a 2xx answer into out.
func (c *client) mustJSON(t *testing.T, method, path, key string, body, out any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	status, b, err := c.do(method, path, key, r, http.Header{"Content-Type": {"application/json"}})
	if err != nil || status/100 != 2 {
		t.Fatalf("%s %s: %d %s %v", method, path, status, b, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

// entities creates n entities of the business, eight requests at a time.
func (c *client) entities(t *testing.T, key string, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	var g errgroup.Group
	g.SetLimit(8)
	for i := range ids {
		ids[i] = uuid.New()
		g.Go(func() error {
			body := fmt.Sprintf(`{"externalId":%q,"type":"INDIVIDUAL"}`, ids[i])
			status, b, err := c.do(http.MethodPost, "/entity", key, strings.NewReader(body), http.Header{"Content-Type": {"application/json"}})
			if err == nil && status != http.StatusCreated {
				err = fmt.Errorf("create entity: %d %s", status, b)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// upload sends the plan's file once and returns the status.
func (c *client) upload(p *batchPlan) (int, []byte) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "batch.csv")
	fw.Write(p.file)
	mw.Close()
	status, b, err := c.do(http.MethodPost, "/entity/kyc/import/batch", p.key, &body, http.Header{
		"Content-Type": {mw.FormDataContentType()}, "X-Provider": {"sumsub"}, "Idempotency-Key": {p.idempotencyKey},
	})
	if err != nil {
		return 0, []byte(err.Error())
	}
	return status, b
}

// mustUpload uploads the plan's file, retrying server errors with the same
// Idempotency-Key for up to 30 s, and returns the batch id.
func (c *client) mustUpload(t *testing.T, p batchPlan) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		status, b := c.upload(&p)
		if status == http.StatusCreated || status == http.StatusOK {
			var batch struct {
				BatchID string `json:"batchId"`
			}
			if err := json.Unmarshal(b, &batch); err != nil || batch.BatchID == "" {
				t.Fatalf("upload: %d %s", status, b)
			}
			return batch.BatchID
		}
		if (status != 0 && status < 500) || time.Now().After(deadline) {
			t.Fatalf("upload: %d %s", status, b)
		}
	}
}

// waitDone polls the batch until it is finished, through the outages.
func (c *client) waitDone(t *testing.T, p batchPlan, timeout time.Duration) bool {
	t.Helper()
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		status, b, err := c.do(http.MethodGet, "/entity/kyc/import/batch/"+p.id, p.key, nil, nil)
		if err != nil || status != http.StatusOK {
			continue
		}
		last = string(b)
		var batch struct {
			Status string `json:"status"`
		}
		if json.Unmarshal(b, &batch) == nil && batch.Status != "pending" && batch.Status != "in_progress" {
			return true
		}
	}
	t.Errorf("batch %s not finished after %s: %s", p.id, timeout, last)
	return false
}

// logUnfinished logs what PostgreSQL and Redis hold of a batch's records
// not final: what a stuck record's state was, for the one who reads the failure.
func logUnfinished(t *testing.T, dbURL string, rdb *redis.Client, batchID string) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Log(err)
		return
	}
	defer pool.Close()
	rows, err := pool.Query(ctx, `
		SELECT row_number, attempts, answered_attempts, refusals, feeds, coalesce(queued_at::text, '-'), coalesce(last_attempt_at::text, '-'), now()::text
		FROM batch_records WHERE batch_id = $1 AND status = 'pending'`, batchID)
	if err != nil {
		t.Log(err)
		return
	}
	for rows.Next() {
		var row, attempts, answered, refusals, feeds int
		var queuedAt, lastAttempt, now string
		if err := rows.Scan(&row, &attempts, &answered, &refusals, &feeds, &queuedAt, &lastAttempt, &now); err == nil {
			t.Logf("pending row %d: attempts %d, answered %d, refusals %d, feeds %d, queued at %s, last attempt %s (now %s)",
				row, attempts, answered, refusals, feeds, queuedAt, lastAttempt, now)
		}
	}
	rows.Close()
	keys, _ := rdb.Keys(ctx, "*").Result()
	for _, k := range keys {
		if typ, _ := rdb.Type(ctx, k).Result(); typ == "zset" {
			members, _ := rdb.ZRangeWithScores(ctx, k, 0, 20).Result()
			t.Logf("redis %s: %v", k, members)
		} else if typ == "hash" && strings.Contains(k, "circuit") {
			h, _ := rdb.HGetAll(ctx, k).Result()
			t.Logf("redis %s: %v", k, h)
		}
	}
}

// simToken is what the simulator knows of one share token.
type simToken struct {
	Seen    int  `json:"seen"`
	Imports int  `json:"imports"`
	Lost    bool `json:"lost"`
}

func simTokens(t *testing.T, simURL string) map[string]simToken {
	t.Helper()
	var tokens map[string]simToken
	getJSON(t, simURL+"/_sim/tokens", &tokens)
	return tokens
}

func simStats(t *testing.T, simURL string) sumsubsim.Stats {
	t.Helper()
	var s sumsubsim.Stats
	getJSON(t, simURL+"/_sim/stats", &s)
	return s
}

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s: want a positive whole number, got %q", name, v)
	}
	return n
}

// callTimeout bounds the workers' Sumsub calls.
const callTimeout = 3 * time.Second

// probeInterval is the workers' longest wait between probes of Sumsub while
// the circuit is open: how late, at most, they notice an outage's end.
const probeInterval = 10 * time.Second

// outageLog runs Sumsub's outages and notes what each one did.
type outageLog struct {
	sim, api string
	settle   time.Duration
	took     time.Duration // the outages and the waits for the circuit to close
	list     []outage
}

type outage struct {
	what                string
	length              time.Duration
	answers, beforeOpen int           // requests the outage took; of those, before the circuit opened
	recovery            time.Duration // from the outage's end to the circuit closed
}

// run puts the simulator in an outage of the kind for length, checks that
// the circuit opens, waits for the outage to end and the circuit to close,
// then lets records flow for the settling time.
func (l *outageLog) run(t *testing.T, kind sumsubsim.Outage, length time.Duration, what string) {
	t.Helper()
	begin := time.Now()
	before := simStats(t, l.sim).OutageAnswers
	body := fmt.Sprintf(`{"outage":%q,"seconds":%g}`, kind, length.Seconds())
	res, err := http.Post(l.sim+"/_sim/faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /_sim/faults %s: %d", body, res.StatusCode)
	}
	ends := time.Now().Add(length)
	o := outage{what: what, length: length, beforeOpen: -1}
	// Timeouts are known a call's timeout after they start.
	for time.Now().Before(ends.Add(callTimeout+time.Second)) && (o.beforeOpen < 0 || time.Now().Before(ends)) {
		if o.beforeOpen < 0 && l.circuit(t) == "open" {
			o.beforeOpen = simStats(t, l.sim).OutageAnswers - before
		}
		time.Sleep(50 * time.Millisecond)
	}
	if o.beforeOpen < 0 {
		t.Errorf("%s: the circuit never opened", what)
	}
	for deadline := ends.Add(2 * probeInterval); l.circuit(t) != "closed"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the circuit still open %s after the outage's end", what, 2*probeInterval)
		}
	}
	o.recovery = time.Since(ends)
	o.answers = simStats(t, l.sim).OutageAnswers - before
	l.list = append(l.list, o)
	time.Sleep(l.settle)
	l.took += time.Since(begin)
}

// circuit is the Sumsub circuit's state, as the API's /readyz shows it.
func (l *outageLog) circuit(t *testing.T) string {
	t.Helper()
	var ready struct {
		Sumsub struct{ Circuit string }
	}
	getJSON(t, l.api+"/readyz", &ready)
	return ready.Sumsub.Circuit
}
