package main

import (
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/storage/s3local"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/proctest"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
)

// BenchmarkConcurrentUploads sends 200 uploads of a 10 MB, 5,000-row file at
// once to cmd/api on its defaults (50 businesses, 4 uploads each) and
// reports the API process's peak RSS (VmHWM), how each upload was answered
// (201, 429, 503; anything else fails the benchmark) and the slowest
// /healthz while they ran. S3 runs in this process, out of the figure.
func BenchmarkConcurrentUploads(b *testing.B) {
	const businesses, perBusiness = 50, 4
	ctx := context.Background()
	dbURL := dbtest.URL(b)
	s3 := httptest.NewServer(s3local.InMemory())
	defer s3.Close()
	st, err := storage.New(ctx, s3local.Config(s3.URL, "kycbatch"))
	if err != nil {
		b.Fatal(err)
	}
	if err := st.EnsureBucket(ctx); err != nil {
		b.Fatal(err)
	}
	pool, err := database.Open(ctx, dbURL, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	store := auth.NewStore(pool)
	keys := make([]string, businesses)
	for i := range keys {
		business, err := store.EnsureBusiness(ctx, fmt.Sprintf("uploads-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = auth.NewKey()
		if err := store.AddKey(ctx, business, keys[i]); err != nil {
			b.Fatal(err)
		}
	}
	body, contentType := tenMegabytes(b)

	addr := proctest.FreeAddr(b)
	p := proctest.Start(b, "HTTP_ADDR="+addr, "DATABASE_URL="+dbURL, "REDIS_URL="+redistest.URL(b),
		"S3_ENDPOINT="+s3.URL, "S3_FORCE_PATH_STYLE=true", "S3_BUCKET=kycbatch", "LOG_LEVEL=warn",
		"AWS_ACCESS_KEY_ID=kycbatch-dev", "AWS_SECRET_ACCESS_KEY=kycbatch-dev-secret")
	base := "http://" + addr
	proctest.WaitHTTP(b, base+"/healthz")

	// Expect: 100-continue, as curl sends for a large body: a refused upload
	// is answered before its body is sent.
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second, MaxIdleConnsPerHost: businesses * perBusiness}}
	answers := map[int]int{}
	var slowest time.Duration
	for i := 0; b.Loop(); i++ {
		done := make(chan struct{})
		go func() { slowest = max(slowest, watchHealth(b, base, done)) }()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for u := range businesses * perBusiness {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodPost, base+"/entity/kyc/import/batch", bytes.NewReader(body))
				req.Header.Set("Content-Type", contentType)
				req.Header.Set("X-API-Key", keys[u%businesses])
				req.Header.Set("X-Provider", "sumsub")
				req.Header.Set("Idempotency-Key", fmt.Sprintf("run-%d-upload-%d", i, u))
				req.Header.Set("Expect", "100-continue")
				res, err := client.Do(req)
				if err != nil {
					b.Errorf("upload %d: %v", u, err)
					return
				}
				res.Body.Close()
				mu.Lock()
				defer mu.Unlock()
				answers[res.StatusCode]++
			})
		}
		wg.Wait()
		close(done)
	}
	for status := range answers {
		if status != http.StatusCreated && status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
			b.Errorf("answers %v: %d is not a documented answer to an upload here", answers, status)
		}
	}
	peak, err := peakRSS(p.Pid())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MB")
	n := float64(b.N)
	b.ReportMetric(float64(answers[http.StatusCreated])/n, "created/op")
	b.ReportMetric(float64(answers[http.StatusTooManyRequests])/n, "429/op")
	b.ReportMetric(float64(answers[http.StatusServiceUnavailable])/n, "503/op")
	b.ReportMetric(float64(slowest.Milliseconds()), "healthz-max-ms")
}

// tenMegabytes is a multipart body holding a CSV file of 5,000 rows just
// under 10 MB (share tokens of about 2 kB), and its content type.
func tenMegabytes(b *testing.B) ([]byte, string) {
	var file bytes.Buffer
	file.WriteString("externalId,shareToken\n")
	token := strings.Repeat("t", (ingest.MaxFileBytes-4096)/ingest.MaxRows-60)
	for i := range ingest.MaxRows {
		fmt.Fprintf(&file, "%s,_act-%d-%s\n", uuid.New(), i, token)
	}
	if file.Len() > ingest.MaxFileBytes {
		b.Fatalf("file of %d bytes, over the limit", file.Len())
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "batch.csv")
	fw.Write(file.Bytes())
	mw.Close()
	return body.Bytes(), mw.FormDataContentType()
}

// watchHealth asks /healthz every 50 ms until done and returns its slowest
// answer; an answer other than 200 fails the benchmark.
func watchHealth(b *testing.B, base string, done <-chan struct{}) time.Duration {
	var slowest time.Duration
	for {
		select {
		case <-done:
			return slowest
		case <-time.After(50 * time.Millisecond):
		}
		start := time.Now()
		res, err := http.Get(base + "/healthz")
		if err != nil {
			b.Errorf("/healthz: %v", err)
			continue
		}
		res.Body.Close()
		slowest = max(slowest, time.Since(start))
		if res.StatusCode != http.StatusOK {
			b.Errorf("/healthz: %d", res.StatusCode)
		}
	}
}

// peakRSS is a process's peak resident set size (VmHWM), in bytes.
func peakRSS(pid int) (int64, error) {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
