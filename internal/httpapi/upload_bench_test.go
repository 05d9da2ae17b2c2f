package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"

	"github.com/google/uuid"
)

// BenchmarkUpload5000Rows times the acceptance of a realistic 5,000-row file
// (about 1.5 MB: share tokens of ~250 characters) through HTTP, PostgreSQL and
// S3, and reports the median and 99th percentile besides the mean.
//
// Beside each upload it loads the same file into a bare table of text columns
// with psql's \copy, the floor for getting those rows into PostgreSQL (a new
// psql process and connection included), and reports that load's median and
// 99th percentile (copy-ms-p50, copy-ms-p99) and how many times the floor an
// upload takes (ratio-p50, of the medians). Upload and copy alternate, and
// swap order every iteration, so both see the same load on the machine. The
// mean (ns/op, MB/s) stays the upload's alone. Without psql on PATH the
// benchmark is skipped.
func BenchmarkUpload5000Rows(b *testing.B) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		b.Skipf("psql is not on PATH, and the \\copy floor cannot be measured without it: %v", err)
	}
	e := apitest.New(b, apitest.Options{})
	key, _ := e.Business(b)
	var sb strings.Builder
	sb.WriteString("externalId,shareToken,applicantLevel\n")
	for i := range 5000 {
		fmt.Fprintf(&sb, "%s,_act-sbx-jwt-eyJhbGciOiJub25lIn0.%0220d,basic-kyc-level\n", uuid.New(), i)
	}
	file := []byte(sb.String())
	b.SetBytes(int64(len(file)))

	ctx := context.Background()
	if _, err := e.Pool.Exec(ctx, `CREATE TABLE bare (external_id text, share_token text, applicant_level text)`); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "batch.csv")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		b.Fatal(err)
	}
	copyCmd := fmt.Sprintf(`\copy bare(external_id, share_token, applicant_level) FROM '%s' WITH (FORMAT csv, HEADER)`,
		strings.ReplaceAll(path, "'", "''"))

	var took, copied []time.Duration
	for i := 0; b.Loop(); i++ {
		upload := func() {
			req := e.UploadRequest(b, key, fmt.Sprintf("bench-%d-%s", i, uuid.NewString()), file, nil)
			start := time.Now()
			r := e.Do(b, req)
			took = append(took, time.Since(start))
			if r.Status != http.StatusCreated {
				b.Fatalf("upload: %d %s", r.Status, r.Body)
			}
		}
		load := func() {
			b.StopTimer()
			defer b.StartTimer()
			if _, err := e.Pool.Exec(ctx, `TRUNCATE bare`); err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(psql, "--no-psqlrc", "--set", "ON_ERROR_STOP=1", "--dbname", e.DatabaseURL(), "-c", copyCmd)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			copied = append(copied, time.Since(start))
			if err != nil || strings.TrimSpace(string(out)) != "COPY 5000" {
				b.Fatalf("psql \\copy: %v\n%s", err, out)
			}
		}
		if i%2 == 0 {
			upload()
			load()
		} else {
			load()
			upload()
		}
	}
	slices.Sort(took)
	slices.Sort(copied)
	p50, p99 := took[len(took)/2], took[len(took)*99/100]
	copyP50, copyP99 := copied[len(copied)/2], copied[len(copied)*99/100]
	b.ReportMetric(float64(p50.Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(p99.Microseconds())/1000, "ms-p99")
	b.ReportMetric(float64(copyP50.Microseconds())/1000, "copy-ms-p50")
	b.ReportMetric(float64(copyP99.Microseconds())/1000, "copy-ms-p99")
	b.ReportMetric(float64(p50)/float64(copyP50), "ratio-p50")
}
