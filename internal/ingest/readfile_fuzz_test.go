package ingest

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzReadFile feeds arbitrary files to the upload's reading (limit, hash,
// spool and validator): it must never panic, every refusal must be one of
// the upload's errors (a client's fault, which the API answers 400), and
// whatever it accepts must be a valid batch.
func FuzzReadFile(f *testing.F) {
	f.Add([]byte("externalId,shareToken\n6f1c2f5e-1c1a-4c55-9d3e-1a2b3c4d5e6f,t\n"))
	f.Add([]byte("\xef\xbb\xbf\"a\nb\",c\r\n"))
	f.Add([]byte("externalId,shareToken\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, file []byte) {
		s, err := readFile(bytes.NewReader(file))
		if s != nil {
			defer s.close()
		}
		if err != nil {
			for _, clientErr := range []error{ErrTooLarge, ErrTooManyRows, ErrInvalidFile, ErrUnreadable} {
				if errors.Is(err, clientErr) {
					return
				}
			}
			t.Fatalf("readFile: %v is not an upload error", err)
		}
		if !s.parsed.Valid() || len(s.parsed.Records) == 0 || s.size > MaxFileBytes || s.size != int64(len(file)) {
			t.Fatalf("accepted a file that is not valid: %+v, %d bytes", s.parsed, s.size)
		}
	})
}
