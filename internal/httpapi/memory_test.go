package httpapi_test

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"runtime/debug"
	"testing"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
	"github.com/kycbatch/kycbatch/internal/testing/heaptest"

	"github.com/google/uuid"
)

// TestRefused50MBUploadMemory streams a 50 MB file at the API and checks that
// the heap grows by a few MB at most while the upload is refused: the body is
// read as a stream through the 10 MB limit, never held in memory.
// It is not parallel, so that no other test's allocations are measured.
func TestRefused50MBUploadMemory(t *testing.T) {
	e := apitest.New(t, apitest.Options{})
	key, business := e.Business(t)

	const size = 50 << 20
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, err := mw.CreateFormFile("file", "big.csv")
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		fw.Write([]byte("externalId,shareToken\n"))
		var block bytes.Buffer
		for i := 0; block.Len() < 64<<10; i++ {
			fmt.Fprintf(&block, "%s,_act-sbx-jwt-%0200d\n", uuid.New(), i)
		}
		for written := 0; written < size; written += block.Len() {
			if _, err := fw.Write(block.Bytes()); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	req := e.UploadRequest(t, key, "big", nil, nil)
	req.Body, req.ContentLength = pr, -1
	req.Header.Set("Content-Type", mw.FormDataContentType())

	defer debug.SetGCPercent(debug.SetGCPercent(10)) // keep garbage from hiding or faking growth
	var res *http.Response
	var err error
	growth := heaptest.PeakGrowth(func() { res, err = http.DefaultClient.Do(req) })
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	pr.Close()

	want := `{"code":"0701010100","message":"File size exceeds the maximum limit of 10 MB","parameter":""}`
	if res.StatusCode != http.StatusBadRequest || string(body) != want {
		t.Errorf("got %d %s, want 400 %s", res.StatusCode, body, want)
	}
	t.Logf("heap in use grew by %.1f MB at peak during a refused 50 MB upload", float64(growth)/(1<<20))
	if growth > 8<<20 {
		t.Errorf("heap grew by %d bytes, want at most 8 MB", growth)
	}
	if b, r, o := e.Stored(t, business); b+r+o != 0 {
		t.Errorf("refused upload stored %d batches, %d records, %d objects", b, r, o)
	}
}
