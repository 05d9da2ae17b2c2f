package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/ingest"
)

func TestUploadStoresBatch(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, business := e.Business(t)
	ids := e.Entities(t, key, 3)
	// A BOM, CRLF line ends, a quoted newline, reordered and unknown columns, a blank line.
	file := []byte("\ufeffnote,shareToken,externalId,applicantLevel,cardProcessorPublicToken\r\n" +
		"\"two\r\nlines\",tok-a," + ids[0].String() + ",basic-kyc-level,card-1\r\n" +
		"\r\n" +
		"x,tok-b," + ids[1].String() + ",,\r\n" +
		"\"a, b\",\"tok-c\"," + strings.ToUpper(ids[2].String()) + ",levelKyc,\r\n")

	r := e.Upload(t, key, "idem-1", file)
	if r.Status != http.StatusCreated {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	got := r.JSON(t)
	batchID := got["batchId"].(string)
	want := fmt.Sprintf(`{"batchId":%q,"businessUuid":%q,"status":"pending","totalRecords":3,"message":"File uploaded successfully. Processing will start shortly.","createdAt":%q}`,
		batchID, business, got["createdAt"])
	if diff := cmp.Diff(want, string(r.Body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	if loc := r.Header.Get("Location"); loc != "/entity/kyc/import/batch/"+batchID {
		t.Errorf("Location %q", loc)
	}

	type record struct {
		Row                    int
		ExternalID, ShareToken string
		Level, Card            *string
		Status                 string
	}
	rows, err := e.Pool.Query(context.Background(), `
		SELECT row_number, external_id::text, share_token, applicant_level, card_processor_public_token, status
		FROM batch_records WHERE batch_id = $1 ORDER BY row_number`, batchID)
	if err != nil {
		t.Fatal(err)
	}
	var records []record
	for rows.Next() {
		var rec record
		if err := rows.Scan(&rec.Row, &rec.ExternalID, &rec.ShareToken, &rec.Level, &rec.Card, &rec.Status); err != nil {
			t.Fatal(err)
		}
		records = append(records, rec)
	}
	str := func(s string) *string { return &s }
	wantRecords := []record{
		{Row: 2, ExternalID: ids[0].String(), ShareToken: "tok-a", Level: str("basic-kyc-level"), Card: str("card-1"), Status: "pending"},
		{Row: 4, ExternalID: ids[1].String(), ShareToken: "tok-b", Status: "pending"},
		{Row: 5, ExternalID: ids[2].String(), ShareToken: "tok-c", Level: str("levelKyc"), Status: "pending"},
	}
	if diff := cmp.Diff(wantRecords, records); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}

	// The raw file is in S3, byte for byte, under a key naming business and batch.
	objKey := fmt.Sprintf("uploads/%s/%s.csv", business, batchID)
	obj, err := e.Files.Get(context.Background(), objKey)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(obj)
	obj.Close()
	if !bytes.Equal(raw, file) {
		t.Errorf("stored file differs from the upload:\n%q\n%q", raw, file)
	}

	// No share token reaches the logs.
	for _, tok := range []string{"tok-a", "tok-b", "tok-c"} {
		if strings.Contains(e.Logs.String(), tok) {
			t.Errorf("share token %s logged", tok)
		}
	}
}

// TestUploadErrors checks every error of the contract's upload table, in its
// order: each case also breaks every later rule, so the first one must win.
// A refused upload stores nothing.
func TestUploadErrors(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, business := e.Business(t)
	ids := e.Entities(t, key, 3)
	good := apitest.CSVFile("", ids)
	if r := e.Upload(t, key, "used-key", good); r.Status != http.StatusCreated {
		t.Fatalf("first upload: %d %s", r.Status, r.Body)
	}
	baseBatches, baseRecords, baseObjects := e.Stored(t, business)

	tooBig := bytes.Repeat([]byte("x"), ingest.MaxFileBytes+1)
	tooManyRows := apitest.CSVFile("", make([]uuid.UUID, ingest.MaxRows+1))
	badRows := []byte("externalId,shareToken\n" + ids[0].String() + ",tok\n" + ids[1].String() + ",tok\n,tok\n" + ids[2].String() + ",\nnot-a-uuid,tok\n" + ids[0].String() + ",tok\n")

	body := func(code, message string) string {
		return fmt.Sprintf(`{"code":%q,"message":%q,"parameter":""}`, code, message)
	}
	tests := []struct {
		name    string
		req     func() *http.Request
		wantMsg string
	}{
		{"no X-Provider", func() *http.Request {
			return e.UploadRequest(t, key, "", tooBig, map[string]string{"X-Provider": "", "Idempotency-Key": ""})
		}, body("0701010200", "Valid X-Provider header is required")},
		{"other X-Provider", func() *http.Request {
			return e.UploadRequest(t, key, "", tooBig, map[string]string{"X-Provider": "onfido"})
		}, body("0701010200", "Valid X-Provider header is required")},
		{"no Idempotency-Key", func() *http.Request {
			return e.UploadRequest(t, key, "", tooBig, map[string]string{"Idempotency-Key": ""})
		}, body("0701010200", "Idempotency-Key header is required")},
		{"used Idempotency-Key", func() *http.Request {
			return e.UploadRequest(t, key, "used-key", tooBig, nil)
		}, body("0701010300", "A request with this idempotency key has already been processed")},
		{"not multipart", func() *http.Request {
			req := e.UploadRequest(t, key, "k-json", nil, nil)
			req.Body = io.NopCloser(strings.NewReader(`{"file":"x"}`))
			req.ContentLength = -1
			req.Header.Set("Content-Type", "application/json")
			return req
		}, body("0701010200", "No files provided in the request")},
		{"no file part", func() *http.Request {
			var b bytes.Buffer
			mw := multipart.NewWriter(&b)
			mw.WriteField("other", "value")
			mw.Close()
			req := e.UploadRequest(t, key, "k-nofile", nil, nil)
			req.Body, req.ContentLength = io.NopCloser(&b), int64(b.Len())
			req.Header.Set("Content-Type", mw.FormDataContentType())
			return req
		}, body("0701010200", "No files provided in the request")},
		{"file over 10 MB", func() *http.Request {
			return e.UploadRequest(t, key, "k-big", tooBig, nil)
		}, body("0701010100", "File size exceeds the maximum limit of 10 MB")},
		{"more than 5000 rows", func() *http.Request {
			return e.UploadRequest(t, key, "k-rows", tooManyRows, nil)
		}, body("0701010100", "File contains too many rows, limit is 5000")},
		{"bad rows", func() *http.Request {
			return e.UploadRequest(t, key, "k-bad", badRows, nil)
		}, body("0701010200", "CSV validation failed: 4 error(s) found.\n"+
			"Row 4: Missing required field 'externalId'\n"+
			"Row 5: Missing required field 'shareToken'\n"+
			"Row 6: Invalid externalId 'not-a-uuid': must be a UUID\n"+
			"Row 7: Duplicate externalId '"+ids[0].String()+"' (first seen on row 2)")},
		{"not UTF-8", func() *http.Request {
			return e.UploadRequest(t, key, "k-utf8", []byte("externalId,shareToken\n"+ids[0].String()+",\xff\xfe\n"), nil)
		}, body("0701010200", "CSV validation failed: 1 error(s) found.\nFile is not valid UTF-8")},
		{"empty file", func() *http.Request {
			return e.UploadRequest(t, key, "k-empty", nil, nil)
		}, body("0701010200", "CSV validation failed: 1 error(s) found.\nFile is empty")},
		{"card token twice in the file", func() *http.Request {
			return e.UploadRequest(t, key, "k-card", []byte("externalId,shareToken,cardProcessorPublicToken\n"+
				ids[0].String()+",t1,card-9\n"+ids[1].String()+",t2,card-9\n"), nil)
		}, body("0701010200", "duplicate cardProcessorPublicToken found")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.Do(t, tt.req())
			if r.Status != http.StatusBadRequest {
				t.Errorf("status %d, want 400", r.Status)
			}
			if diff := cmp.Diff(tt.wantMsg, string(r.Body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			batches, records, objects := e.Stored(t, business)
			if batches != baseBatches || records != baseRecords || objects != baseObjects {
				t.Errorf("refused upload stored something: %d batches, %d records, %d objects; want %d, %d, %d",
					batches, records, objects, baseBatches, baseRecords, baseObjects)
			}
		})
	}
}

func TestUploadCardTokenHeldByAnotherEntity(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, business := e.Business(t)
	ids := e.Entities(t, key, 2)
	if _, err := e.Pool.Exec(context.Background(),
		`UPDATE entities SET card_processor_public_token = 'card-held' WHERE business_id = $1 AND external_id = $2`, business, ids[0]); err != nil {
		t.Fatal(err)
	}
	// The holder itself may carry its own token again.
	own := []byte("externalId,shareToken,cardProcessorPublicToken\n" + ids[0].String() + ",t1,card-held\n")
	if r := e.Upload(t, key, "own", own); r.Status != http.StatusCreated {
		t.Errorf("holder re-uses its token: %d %s", r.Status, r.Body)
	}
	other := []byte("externalId,shareToken,cardProcessorPublicToken\n" + ids[1].String() + ",t2,card-held\n")
	r := e.Upload(t, key, "other", other)
	want := `{"code":"0701010200","message":"duplicate cardProcessorPublicToken found","parameter":""}`
	if r.Status != http.StatusBadRequest || string(r.Body) != want {
		t.Errorf("another entity takes the token: %d %s", r.Status, r.Body)
	}
	// A token held in another business does not clash.
	key2, _ := e.Business(t)
	ids2 := e.Entities(t, key2, 1)
	if r := e.Upload(t, key2, "b2", []byte("externalId,shareToken,cardProcessorPublicToken\n"+ids2[0].String()+",t3,card-held\n")); r.Status != http.StatusCreated {
		t.Errorf("other business: %d %s", r.Status, r.Body)
	}
}

func TestUploadLimits(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, _ := e.Business(t)

	// Exactly 5,000 rows, padded by an ignored column to exactly 10 MB.
	ids := make([]uuid.UUID, ingest.MaxRows)
	for i := range ids {
		ids[i] = uuid.New()
	}
	header := "externalId,shareToken,pad\n"
	rowLen := (ingest.MaxFileBytes - len(header)) / ingest.MaxRows
	var b bytes.Buffer
	b.WriteString(header)
	for i, id := range ids {
		line := fmt.Sprintf("%s,tok-%d,", id, i)
		n := rowLen - len(line) - 1
		if i == len(ids)-1 {
			n += ingest.MaxFileBytes - len(header) - rowLen*ingest.MaxRows
		}
		b.WriteString(line + strings.Repeat("p", n) + "\n")
	}
	if b.Len() != ingest.MaxFileBytes {
		t.Fatalf("built %d bytes, want %d", b.Len(), ingest.MaxFileBytes)
	}
	r := e.Upload(t, key, "max", b.Bytes())
	if r.Status != http.StatusCreated || r.JSON(t)["totalRecords"] != float64(ingest.MaxRows) {
		t.Fatalf("10 MB, 5000 rows: %d %.200s", r.Status, r.Body)
	}
	plusOne := append(b.Bytes(), '\n')
	if r := e.Upload(t, key, "max+1", plusOne); r.Status != http.StatusBadRequest || r.JSON(t)["code"] != "0701010100" {
		t.Errorf("10 MB + 1 byte: %d %s", r.Status, r.Body)
	}
}

func TestUploadIdempotencyUnderConcurrency(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, business := e.Business(t)
	ids := e.Entities(t, key, 20)

	const n = 20
	statuses := make([]apitest.Response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		req := e.UploadRequest(t, key, "same-key", apitest.CSVFile("", ids[i:i+1]), nil)
		wg.Go(func() {
			<-start
			statuses[i] = e.Do(t, req)
		})
	}
	close(start)
	wg.Wait()

	created := 0
	for _, r := range statuses {
		switch {
		case r.Status == http.StatusCreated:
			created++
		case r.Status == http.StatusBadRequest && r.JSON(t)["code"] == "0701010300":
		default:
			t.Errorf("unexpected answer %d %s", r.Status, r.Body)
		}
	}
	batches, records, objects := e.Stored(t, business)
	if created != 1 || batches != 1 || records != 1 || objects != 1 {
		t.Errorf("got %d created, %d batches, %d records, %d objects; want 1 of each", created, batches, records, objects)
	}
}

func TestBatchStatus(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, business := e.Business(t)
	ids := e.Entities(t, key, 2)
	up := e.Upload(t, key, "status", apitest.CSVFile("", ids))
	if up.Status != http.StatusCreated {
		t.Fatalf("upload: %d %s", up.Status, up.Body)
	}
	id := up.JSON(t)["batchId"].(string)

	r := e.Call(t, http.MethodGet, "/entity/kyc/import/batch/"+id, key, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("status: %d %s", r.Status, r.Body)
	}
	got := r.JSON(t)
	want := fmt.Sprintf(`{"batchId":%q,"businessUuid":%q,"provider":"sumsub","status":"pending","totalRecords":2,`+
		`"processedRecords":0,"failedRecords":0,"summary":{"successfulRecords":0,"errors":[]},`+
		`"createdAt":%q,"updatedAt":%q,"startedAt":null,"completedAt":null,"estimatedCompletionAt":%q,"fileRetainedUntil":null}`,
		id, business, got["createdAt"], got["updatedAt"], got["estimatedCompletionAt"])
	if diff := cmp.Diff(want, string(r.Body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}

	other, _ := e.Business(t)
	notFound := `{"code":"0701020100","message":"batch not found","parameter":"batchId"}`
	for _, c := range []struct{ key, id string }{{key, uuid.NewString()}, {key, "not-a-uuid"}, {other, id}} {
		r := e.Call(t, http.MethodGet, "/entity/kyc/import/batch/"+c.id, c.key, nil)
		if r.Status != http.StatusNotFound || string(r.Body) != notFound {
			t.Errorf("GET batch %s: %d %s", c.id, r.Status, r.Body)
		}
	}
}
