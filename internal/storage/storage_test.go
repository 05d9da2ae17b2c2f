package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/testing/s3test"
)

func get(t *testing.T, link string) (int, []byte) {
	t.Helper()
	res, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// TestPresignedLinksAgainstVersitygw uploads a multipart object and checks
// that its presigned link works before it expires, and not after nor when
// its signature is tampered with.
func TestPresignedLinksAgainstVersitygw(t *testing.T) {
	t.Parallel()
	st := s3test.Versitygw(t)
	ctx := context.Background()
	content := make([]byte, 6<<20+123) // more than one 5 MiB part
	rand.Read(content)
	if err := st.Upload(ctx, "reports/r.csv", bytes.NewReader(content), "text/csv"); err != nil {
		t.Fatal(err)
	}

	link, err := st.PresignGet(ctx, "reports/r.csv", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(link, "X-Amz-Expires=2") {
		t.Errorf("link %s does not say it expires after 2 s", link)
	}
	if code, body := get(t, link); code != http.StatusOK || !bytes.Equal(body, content) {
		t.Fatalf("fresh link: %d, %d bytes (want 200, %d bytes)", code, len(body), len(content))
	}
	i := strings.Index(link, "X-Amz-Signature=") + len("X-Amz-Signature=")
	tampered := link[:i] + flip(link[i]) + link[i+1:]
	if code, _ := get(t, tampered); code != http.StatusForbidden {
		t.Errorf("tampered link: %d, want 403", code)
	}
	time.Sleep(3 * time.Second)
	if code, _ := get(t, link); code != http.StatusForbidden {
		t.Errorf("expired link: %d, want 403", code)
	}
}

func flip(c byte) string {
	if c == '0' {
		return "1"
	}
	return "0"
}
