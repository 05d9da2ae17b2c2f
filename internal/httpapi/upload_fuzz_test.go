package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// FuzzMultipartUpload feeds arbitrary bodies and boundaries to the upload's
// multipart reading: it must never panic, and every refusal must be one of
// the contract's answers (a client's fault), never an internal one. What
// the file part holds is ingest's to judge (FuzzReadFile, FuzzParseCSV).
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
			if p, internal := batchFamily.answer(err); internal || p.status != http.StatusBadRequest {
				t.Fatalf("filePart: %v is answered %d, not as a client's error", err, p.status)
			}
			return
		}
		// The upload reads the part to its end; a part cut short is its
		// client's error (ingest.ErrUnreadable), and reading never panics.
		io.Copy(io.Discard, part) //nolint:errcheck // any read error is a client's
	})
}
