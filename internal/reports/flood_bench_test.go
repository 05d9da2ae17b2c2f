package reports_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// BenchmarkReportFlood: business A sends 2,000 initiates (8 at a time) over
// its 20 batches of 5,000 records while business B asks for the report of
// its 12-record batch; it reports how long B's report took to be ready, and
// how many reports A's flood made. One worker builds them.
func BenchmarkReportFlood(b *testing.B) {
	const floodBatches, floodRecords, initiates = 20, 5000, 2000
	e := apitest.New(b, apitest.Options{})
	e.StartWorker(b, 5*time.Second)
	flood, floodID := e.Business(b)
	quiet, _ := e.Business(b)
	batches := make([]string, floodBatches)
	for i := range batches {
		ids := make([]uuid.UUID, floodRecords) // no such entities: failed at upload, in the report all the same
		for j := range ids {
			ids[j] = uuid.New()
		}
		batches[i] = e.UploadBatch(b, flood, apitest.CSVFile(fmt.Sprintf("flood%d", i), ids))
	}
	quietBatch := e.UploadBatch(b, quiet, apitest.CSVFile("quiet", e.Entities(b, quiet, 12)))

	var total time.Duration
	for b.Loop() {
		var wg sync.WaitGroup
		next := make(chan int)
		for range 8 {
			wg.Go(func() {
				for i := range next {
					e.Call(b, http.MethodPost, reportPath+"initiate", flood, map[string]string{"client_id": batches[i%floodBatches]})
				}
			})
		}
		go func() {
			for i := range initiates {
				next <- i
			}
			close(next)
		}()
		time.Sleep(200 * time.Millisecond) // the flood is under way
		start := time.Now()
		_, id, _ := initiate(b, e, quiet, quietBatch)
		waitReport(b, e, quiet, id)
		total += time.Since(start)
		wg.Wait()
	}
	var made int
	if err := e.Pool.QueryRow(b.Context(), `SELECT count(*) FROM reports WHERE business_id = $1`, floodID).Scan(&made); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "quiet-report-s")
	b.ReportMetric(float64(made)/float64(b.N), "flood-reports/op")
}
