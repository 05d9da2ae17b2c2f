package httpapi_test

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// TestHostileRequests sends malformed, oversized and malicious requests: each
// gets its documented 4xx, nothing is stored for it, and the server stays healthy.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, business := e.Business(t)
	ids := e.Entities(t, key, 2)
	ext := ids[0].String()

	upload := func(idem, contentType string, body io.Reader) *http.Request {
		req := e.UploadRequest(t, key, idem, nil, nil)
		req.Body, req.ContentLength = io.NopCloser(body), -1
		req.Header.Set("Content-Type", contentType)
		return req
	}
	file := func(idem, filename, csv string) *http.Request {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		fw, _ := mw.CreateFormFile("file", filename)
		fw.Write([]byte(csv))
		mw.Close()
		return upload(idem, mw.FormDataContentType(), &b)
	}
	const boundary = "xYz"
	noFiles := `{"code":"0701010200","message":"No files provided in the request","parameter":""}`
	invalid := func(lines ...string) string {
		return fmt.Sprintf(`{"code":"0701010200","message":%q,"parameter":""}`,
			fmt.Sprintf("CSV validation failed: %d error(s) found.\n%s", len(lines), strings.Join(lines, "\n")))
	}
	tests := []struct {
		name   string
		req    *http.Request
		status int
		body   string // exact body, when not empty
	}{
		{"garbage multipart body", upload("g1", "multipart/form-data; boundary="+boundary, strings.NewReader("not multipart at all")), 400, noFiles},
		{"multipart without a boundary", upload("g2", "multipart/form-data", strings.NewReader("--x\r\n")), 400, noFiles},
		{"part never closed", upload("g3", "multipart/form-data; boundary="+boundary,
			strings.NewReader("--"+boundary+"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\nexternalId,shareToken\n"+ext+",t")), 400, ""},
		{"JSON body", upload("g4", "application/json", strings.NewReader(`{"file":"x"}`)), 400, noFiles},
		{"plain text body", upload("g5", "text/plain", strings.NewReader("externalId,shareToken\n")), 400, noFiles},
		{"100 MB body", upload("g6", "multipart/form-data; boundary="+boundary, io.MultiReader(
			strings.NewReader("--"+boundary+"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n\r\n"),
			io.LimitReader(repeat('x'), 100<<20))), 400,
			`{"code":"0701010100","message":"File size exceeds the maximum limit of 10 MB","parameter":""}`},
		{"NUL byte in a share token", file("g7", "a.csv", "externalId,shareToken\n"+ext+",tok\x00en\n"), 400,
			invalid("Row 2: Invalid shareToken: control characters are not allowed")},
		{"SQL in externalId", file("g8", "a.csv", "externalId,shareToken\n'; DROP TABLE batches;--,tok\n"), 400,
			invalid("Row 2: Invalid externalId ''; DROP TABLE batches;--': must be a UUID")},
		{"formula in applicantLevel", file("g9", "a.csv", "externalId,shareToken,applicantLevel\n"+ext+",tok,=cmd|' /C calc'!A0\n"), 400,
			invalid("Row 2: Invalid applicantLevel '=cmd|' /C calc'!A0'")},
		{"100 kB share token", file("g10", "a.csv", "externalId,shareToken\n"+ext+","+strings.Repeat("t", 100<<10)+"\n"), 400,
			invalid("Row 2: Invalid shareToken: longer than 4096 characters")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.Do(t, tt.req)
			if r.Status != tt.status || (tt.body != "" && string(r.Body) != tt.body) {
				t.Errorf("got %d %s\nwant %d %s", r.Status, r.Body, tt.status, tt.body)
			}
		})
	}
	if b, r, o := e.Stored(t, business); b+r+o != 0 {
		t.Errorf("hostile requests stored %d batches, %d records, %d objects", b, r, o)
	}

	// A 1 MB header is refused by the server itself.
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/entity", nil)
	req.Header.Set("X-API-Key", key)
	req.Header.Set("X-Padding", strings.Repeat("p", 1<<20))
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("1 MB header: %d, want 431", res.StatusCode)
		}
	}

	// Payloads that are only data are stored as data: the file name never
	// reaches a path, and SQL in a share token is just a token.
	r := e.Do(t, file("ok", "../../../etc/passwd", "externalId,shareToken\n"+ids[1].String()+",'; DROP TABLE batches;--\n"))
	if r.Status != http.StatusCreated {
		t.Fatalf("benign upload with hostile name and token: %d %s", r.Status, r.Body)
	}
	keys, err := e.Files.Keys(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("uploads/%s/%s.csv", business, r.JSON(t)["batchId"])
	if len(keys) != 1 || keys[0] != want {
		t.Errorf("S3 keys %v, want only %s", keys, want)
	}
	if r := e.Call(t, http.MethodGet, "/healthz", "", nil); r.Status != http.StatusOK {
		t.Errorf("healthz after the hostile requests: %d", r.Status)
	}
}

// TestConcurrentUploadsFromManyBusinesses: 50 uploads from 10 businesses and
// 20 more racing on one Idempotency-Key make exactly 51 batches, each where it belongs.
func TestConcurrentUploadsFromManyBusinesses(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	type biz struct {
		key string
		id  uuid.UUID
		ext []uuid.UUID
	}
	businesses := make([]biz, 10)
	for i := range businesses {
		key, id := e.Business(t)
		businesses[i] = biz{key, id, e.Entities(t, key, 1)}
	}
	var reqs []*http.Request
	for i := range 50 {
		b := businesses[i%10]
		reqs = append(reqs, e.UploadRequest(t, b.key, fmt.Sprintf("key-%d", i), apitest.CSVFile(fmt.Sprint(i), b.ext), nil))
	}
	for i := range 20 {
		b := businesses[0]
		reqs = append(reqs, e.UploadRequest(t, b.key, "shared", apitest.CSVFile(fmt.Sprint("s", i), b.ext), nil))
	}
	codes := make([]int, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() { codes[i] = e.Do(t, req).Status })
	}
	wg.Wait()
	created := 0
	for _, c := range codes {
		if c == http.StatusCreated {
			created++
		}
	}
	if created != 51 {
		t.Errorf("%d uploads created, want 51", created)
	}
	for i, b := range businesses {
		want := 5
		if i == 0 {
			want = 6
		}
		if n, _, o := e.Stored(t, b.id); n != want || o != want {
			t.Errorf("business %d: %d batches and %d files, want %d", i, n, o, want)
		}
	}
}

// repeat is an endless reader of one byte.
type repeat byte

func (r repeat) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}
