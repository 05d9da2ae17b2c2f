package httpapi_test

import (
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// BenchmarkBatchStatus32 reads a pending batch's status (with its completion
// estimate) from 32 concurrent clients and reports requests per second and
// the 99th percentile.
func BenchmarkBatchStatus32(b *testing.B) {
	e := apitest.New(b, apitest.Options{})
	key, _ := e.Business(b)
	id := e.UploadBatch(b, key, apitest.CSVFile("", e.Entities(b, key, 1)))
	url := e.URL + "/entity/kyc/import/batch/" + id
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	var mu sync.Mutex
	var took []time.Duration
	b.SetParallelism(16) // 16 × GOMAXPROCS (2 here) = 32 clients
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("X-API-Key", key)
			t0 := time.Now()
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Errorf("status %d", res.StatusCode)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		took = append(took, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	slices.Sort(took)
	b.ReportMetric(float64(len(took))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "ms-p99")
}
