package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/proctest"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
)

// rateLimit is Sumsub's limit in the rate benchmark: the contract's 10 requests a second.
const rateLimit = 10

// BenchmarkRateUse measures how much of Sumsub's rate limit the workers use,
// as deployed: the dev server (API, one worker, the simulator at 10
// requests/s) plus workers-1 worker processes, all real processes, on a batch
// larger than the run drains. After 5 s (past the start: the steady state is
// measured) it resets the simulator's counters, waits RATE_SECONDS (default
// 60) and reads them. use-ratio is requests/s ÷ the limit; 429s and
// max-in-1s say whether the limit was kept.
func BenchmarkRateUse(b *testing.B) {
	seconds := 60
	if v := os.Getenv("RATE_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		// The batch holds rateLimit × (seconds + 20) records, at most 5,000.
		if err != nil || n < 1 || rateLimit*(n+20) > 5000 {
			b.Fatalf("RATE_SECONDS: want whole seconds from 1 to %d, got %q", 5000/rateLimit-20, v)
		}
		seconds = n
	}
	for _, workers := range []int{1, 3} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			rateUse(b, workers, time.Duration(seconds)*time.Second)
		})
	}
}

func rateUse(b *testing.B, workers int, measure time.Duration) {
	// A database (created by the dev server, dropped at the end), a Redis
	// database and ports of its own: nothing else running is disturbed.
	dbURL := dbtest.MissingURL(b)
	env := []string{"DATABASE_URL=" + dbURL, "REDIS_URL=" + redistest.URL(b), fmt.Sprintf("SUMSUB_RATE_LIMIT=%d", rateLimit), "LOG_LEVEL=warn"}
	httpAddr, s3Addr, simAddr := proctest.FreeAddr(b), proctest.FreeAddr(b), proctest.FreeAddr(b)
	api, sim := "http://"+httpAddr, "http://"+simAddr
	key := auth.NewKey()
	proctest.StartPackage(b, "../devserver", append(env,
		"HTTP_ADDR="+httpAddr, "DEV_S3_ADDR="+s3Addr, "SUMSUB_SIM_ADDR="+simAddr, "DATA_DIR="+b.TempDir(), "DEV_API_KEY="+key)...)
	proctest.WaitHTTP(b, api+"/healthz")
	// The other workers call the dev server's simulator and store reports in its S3.
	var probes []string
	for range workers - 1 {
		ops := proctest.FreeAddr(b)
		proctest.Start(b, append(env,
			"SUMSUB_BASE_URL="+sim, "SUMSUB_APP_TOKEN="+sumsubsim.DevAppToken, "SUMSUB_SECRET_KEY="+sumsubsim.DevSecretKey,
			"S3_ENDPOINT=http://"+s3Addr, "S3_FORCE_PATH_STYLE=true", "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y",
			"WORKER_METRICS_ADDR="+ops)...)
		probes = append(probes, "http://"+ops+"/healthz")
		proctest.WaitHTTP(b, probes[len(probes)-1])
	}

	ids := devEntities(b, dbURL, rateLimit*int(measure/time.Second+20))
	var ratio float64
	var rejected, maxInOneSecond int
	for i := 0; b.Loop(); i++ {
		var file strings.Builder
		file.WriteString("externalId,shareToken\n")
		for row, id := range ids {
			fmt.Fprintf(&file, "%s,rateuse-%d-%d-%s\n", id, i, row, uuid.NewString())
		}
		batchID := upload(b, api, key, file.String())
		time.Sleep(5 * time.Second)
		call(b, http.MethodPost, sim+"/_sim/reset", "")
		start := time.Now()
		time.Sleep(measure)
		var stats sumsubsim.Stats
		if err := json.Unmarshal(call(b, http.MethodGet, sim+"/_sim/stats", ""), &stats); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		for _, probe := range probes {
			if res, err := http.Get(probe); err != nil {
				b.Fatalf("a worker process has stopped: %v", err)
			} else {
				res.Body.Close()
			}
		}
		// What is left of the batch would outlast the benchmark: cancel it.
		call(b, http.MethodPost, api+"/entity/kyc/import/batch/"+batchID+"/cancel", key)

		ratio += float64(stats.Requests) / took.Seconds() / rateLimit
		rejected += stats.Rejected429
		maxInOneSecond = max(maxInOneSecond, stats.MaxRequestsInAnySecond)
	}
	b.ReportMetric(ratio/float64(b.N), "use-ratio")
	b.ReportMetric(float64(rejected)/float64(b.N), "429s")
	b.ReportMetric(float64(maxInOneSecond), "max-in-1s")
}

// devEntities creates n entities of the dev business in one statement and
// returns their external ids: one request each would take longer than the run.
func devEntities(b *testing.B, dbURL string, n int) []string {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	_, err = conn.Exec(ctx, `
		INSERT INTO entities (id, business_id, external_id, type)
		SELECT gen_random_uuid(), (SELECT id FROM businesses WHERE name = 'dev'), x, 'INDIVIDUAL'
		FROM unnest($1::uuid[]) AS x`, ids)
	if err != nil {
		b.Fatalf("create entities: %v", err)
	}
	return ids
}

// upload uploads a batch file and returns the batch's id.
func upload(b *testing.B, api, key, file string) string {
	b.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "batch.csv")
	if err != nil {
		b.Fatal(err)
	}
	io.WriteString(fw, file)
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, api+"/entity/kyc/import/batch", &body)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-Provider", "sumsub")
	req.Header.Set("Idempotency-Key", uuid.NewString())
	var created struct{ BatchID string }
	if err := json.Unmarshal(do(b, req), &created); err != nil {
		b.Fatal(err)
	}
	return created.BatchID
}

// call sends a request without a body, with key as a Bearer token unless
// empty, and returns the body of its answer.
func call(b *testing.B, method, url, key string) []byte {
	b.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return do(b, req)
}

// do sends req and returns the answer's body, failing unless its status is 2xx.
func do(b *testing.B, req *http.Request) []byte {
	b.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		b.Fatal(err)
	}
	if res.StatusCode/100 != 2 {
		b.Fatalf("%s %s: %d %s", req.Method, req.URL, res.StatusCode, body)
	}
	return body
}
