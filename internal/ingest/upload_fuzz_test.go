package ingest

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/kycbatch/kycbatch/internal/apperr"
)

// FuzzMultipartUpload feeds arbitrary bodies and boundaries to the upload's
// multipart reading and file validation: it must never panic, and every
// refusal must be one of the contract's errors (a client's fault), never an
// internal one.
func FuzzMultipartUpload(f *testing.F) {
	f.Add("b", []byte("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\nexternalId,shareToken\n6f1c2f5e-1c1a-4c55-9d3e-1a2b3c4d5e6f,t\n\r\n--b--\r\n"))
	f.Add("b", []byte("--b\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--b--\r\n"))
	f.Add("b", []byte("--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n\xef\xbb\xbf\"a\nb\",c\r\n"))
	f.Add("", []byte("garbage"))
	f.Fuzz(func(t *testing.T, boundary string, body []byte) {
		req, err := http.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		if err != nil {
			t.Skip()
		}
		req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
		part, err := filePart(req)
		if err != nil {
			if _, ok := apperr.As(err); !ok {
				t.Fatalf("filePart: %v is not a contract error", err)
			}
			return
		}
		s, err := readFile(part)
		if s != nil {
			defer s.close()
		}
		if err != nil {
			if e, ok := apperr.As(err); !ok || e.Kind != apperr.Invalid {
				t.Fatalf("readFile: %v is not a contract error", err)
			}
			return
		}
		if !s.parsed.Valid() || len(s.parsed.Records) == 0 || s.size > MaxFileBytes {
			t.Fatalf("accepted a file that is not valid: %+v, %d bytes", s.parsed, s.size)
		}
	})
}
