package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/storage"
	"github.com/kycbatch/kycbatch/internal/storage/s3local"
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

// TestServerSideEncryption writes through a real S3-protocol server (gofakes3)
// and records the encryption headers the SDK sent with every write: AES256
// by default, aws:kms with its key when asked, on single and multipart
// uploads alike.
func TestServerSideEncryption(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ sse, key, wantSSE, wantKey string }{
		{"", "", "AES256", ""},
		{storage.SSEKMS, "arn:aws:kms:eu-west-1:111122223333:key/kycbatch", "aws:kms", "arn:aws:kms:eu-west-1:111122223333:key/kycbatch"},
		{storage.SSEKMS, "", "aws:kms", ""},
	} {
		var mu sync.Mutex
		var seen []string
		s3 := s3local.InMemory()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut || (r.Method == http.MethodPost && r.URL.Query().Has("uploads")) {
				mu.Lock()
				seen = append(seen, r.Header.Get("X-Amz-Server-Side-Encryption")+"|"+r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"))
				mu.Unlock()
			}
			s3.ServeHTTP(w, r)
		}))
		defer srv.Close()
		ctx := context.Background()
		cfg := s3local.Config(srv.URL, "sse")
		cfg.SSE, cfg.SSEKMSKeyID = tt.sse, tt.key
		st, err := storage.New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.EnsureBucket(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		seen = nil // the bucket's creation
		mu.Unlock()
		if err := st.Put(ctx, "uploads/a.csv", strings.NewReader("a"), "text/csv", nil); err != nil {
			t.Fatal(err)
		}
		if err := st.Upload(ctx, "reports/b.csv", strings.NewReader("b"), "text/csv"); err != nil {
			t.Fatal(err)
		}
		want := tt.wantSSE + "|" + tt.wantKey
		if len(seen) == 0 {
			t.Errorf("SSE %q: no write seen", tt.sse)
		}
		for _, got := range seen {
			if got != want {
				t.Errorf("SSE %q, key %q: a write sent %q, want %q", tt.sse, tt.key, got, want)
			}
		}
	}
	if _, err := storage.New(context.Background(), storage.Config{SSE: "none"}); err == nil {
		t.Error("an unknown encryption was taken")
	}
}
