package httpapi_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/apitest"

	"github.com/google/uuid"
)

// BenchmarkUpload5000Rows times the acceptance of a realistic 5,000-row file
// (about 1.5 MB: share tokens of ~250 characters) through HTTP, PostgreSQL and
// S3, and reports the median and 99th percentile besides the mean.
func BenchmarkUpload5000Rows(b *testing.B) {
	e := apitest.New(b, apitest.Options{})
	key, _ := e.Business(b)
	var sb strings.Builder
	sb.WriteString("externalId,shareToken,applicantLevel\n")
	for i := range 5000 {
		fmt.Fprintf(&sb, "%s,_act-sbx-jwt-eyJhbGciOiJub25lIn0.%0220d,basic-kyc-level\n", uuid.New(), i)
	}
	file := []byte(sb.String())
	b.SetBytes(int64(len(file)))

	var took []time.Duration
	for i := 0; b.Loop(); i++ {
		req := e.UploadRequest(b, key, fmt.Sprintf("bench-%d-%s", i, uuid.NewString()), file, nil)
		start := time.Now()
		r := e.Do(b, req)
		took = append(took, time.Since(start))
		if r.Status != http.StatusCreated {
			b.Fatalf("upload: %d %s", r.Status, r.Body)
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "ms-p99")
}
