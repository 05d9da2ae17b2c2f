package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/client"
	"github.com/kycbatch/kycbatch/internal/testing/apitest"
	"github.com/kycbatch/kycbatch/internal/testing/proctest"
)

// cli runs the built command against one service with one API key.
type cli struct {
	bin, url, key string
}

// result is how a run of the command ended.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the command with args and the service's URL and key in its
// environment; the key must never show in what it prints.
func (c cli) run(tb testing.TB, args ...string) result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), "KYCBATCH_URL="+c.url, "KYCBATCH_API_KEY="+c.key)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		tb.Fatalf("kycbatch %v: %v", args, err)
	}
	if c.key != "" && strings.Contains(r.stdout+r.stderr, c.key) {
		tb.Errorf("kycbatch %v printed the API key:\n%s\n%s", args, r.stdout, r.stderr)
	}
	return r
}

// want fails the test unless the run exited with code.
func (r result) want(tb testing.TB, code int) result {
	tb.Helper()
	if r.code != code {
		tb.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

// decode decodes the run's stdout, which must be one JSON document.
func (r result) decode(tb testing.TB, v any) {
	tb.Helper()
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(v); err != nil {
		tb.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if _, err := dec.Token(); err != io.EOF {
		tb.Fatalf("stdout holds more than one JSON document:\n%s", r.stdout)
	}
}

func writeFile(tb testing.TB, name, content string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestCLI(t *testing.T) {
	t.Parallel()
	bin := proctest.Build(t, ".")
	e := apitest.New(t, apitest.Options{})
	e.StartWorker(t, 5*time.Second)
	key, _ := e.Business(t)
	k := cli{bin: bin, url: e.URL, key: key}

	// Three entities through the CLI, in both output formats.
	var ids []string
	for i := range 3 {
		if i == 0 {
			r := k.run(t, "entities", "create", "--type", "INDIVIDUAL").want(t, 0)
			id, ok := strings.CutPrefix(strings.Split(r.stdout, "\n")[1], "externalId:")
			if !ok {
				t.Fatalf("entities create printed:\n%s", r.stdout)
			}
			ids = append(ids, strings.TrimSpace(id))
			continue
		}
		var ent client.Entity
		k.run(t, "--output", "json", "entities", "create").want(t, 0).decode(t, &ent)
		if ent.KYCStatus != "NOT_STARTED" || ent.Type != client.EntityIndividual {
			t.Errorf("created entity: %+v", ent)
		}
		ids = append(ids, ent.ExternalID)
	}
	file := writeFile(t, "sample.csv", fmt.Sprintf("externalId,shareToken\n%s,ok-1\n%s,ok-2\n%s,ok-3\n", ids[0], ids[1], ids[2]))

	var batchID string
	t.Run("upload --wait ends completed with the final counts", func(t *testing.T) {
		r := k.run(t, "upload", file, "--wait", "--interval", "100ms").want(t, 0)
		if !strings.Contains(r.stdout, ": completed\ntotal 3, processed 3, succeeded 3, failed 0\n") {
			t.Errorf("stdout:\n%s", r.stdout)
		}
		// Not a terminal: plain progress lines, the last one final.
		if !strings.Contains(r.stderr, "uploaded: 3 records\n") || !strings.HasSuffix(r.stderr, "completed 3/3 processed, 0 failed, 100%\n") || strings.Contains(r.stderr, "\r") {
			t.Errorf("stderr:\n%q", r.stderr)
		}
	})

	t.Run("output json is valid JSON", func(t *testing.T) {
		// Fresh entities: Sumsub refuses a share token used twice.
		file := writeFile(t, "json.csv", string(apitest.CSVFile("ok", e.Entities(t, key, 3))))
		var b client.Batch
		k.run(t, "--output", "json", "upload", file, "--wait", "--interval", "100ms", "--idempotency-key", "cli-json-1").want(t, 0).decode(t, &b)
		if b.Status != client.BatchCompleted || b.ProcessedRecords != 3 {
			t.Errorf("upload --wait --output json: %+v", b)
		}
		batchID = b.BatchID
		var status client.Batch
		k.run(t, "status", batchID, "--output", "json").want(t, 0).decode(t, &status)
		if status.BatchID != batchID || status.Status != client.BatchCompleted {
			t.Errorf("status --output json: %+v", status)
		}
		var records []client.Record
		k.run(t, "records", batchID, "--output", "json").want(t, 0).decode(t, &records)
		if len(records) != 3 || records[0].Row != 2 || records[0].Status != client.RecordSucceeded {
			t.Errorf("records --output json: %+v", records)
		}
		k.run(t, "records", batchID, "--failed", "--output", "json").want(t, 0).decode(t, &records)
		if len(records) != 0 {
			t.Errorf("records --failed --output json: %+v", records)
		}
		// The key is taken: the contract's refusal, as JSON on stderr.
		r := k.run(t, "--output", "json", "upload", file, "--idempotency-key", "cli-json-1").want(t, 3)
		var body struct{ Error map[string]any }
		if err := json.Unmarshal([]byte(r.stderr), &body); err != nil || body.Error["code"] != client.CodeIdempotencyKeyUsed {
			t.Errorf("stderr of a refused upload: %v\n%s", err, r.stderr)
		}
		// Its batch, found by the key (as a client that lost its 201 would).
		var found []client.Batch
		k.run(t, "batches", "--idempotency-key", "cli-json-1", "--output", "json").want(t, 0).decode(t, &found)
		if len(found) != 1 || found[0].BatchID != batchID {
			t.Errorf("batches --idempotency-key: %+v, want the batch %s", found, batchID)
		}
		k.run(t, "batches", "--limit", "1", "--output", "json").want(t, 0).decode(t, &found)
		if len(found) != 1 || found[0].BatchID != batchID {
			t.Errorf("batches --limit 1: %+v, want the newest, %s", found, batchID)
		}
	})

	t.Run("report --out writes the bytes the link serves", func(t *testing.T) {
		if batchID == "" {
			t.Skip("no batch")
		}
		out := filepath.Join(t.TempDir(), "report.csv")
		var rep struct {
			client.Report
			Out   string
			Bytes int64
		}
		k.run(t, "report", batchID, "--out", out, "--interval", "100ms", "--output", "json").want(t, 0).decode(t, &rep)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Status != client.ReportSuccess || rep.Bytes != int64(len(got)) || rep.Link != nil {
			t.Errorf("report --output json: %+v", rep)
		}
		built, err := client.New(e.URL, key).GetReport(t.Context(), rep.ID)
		if err != nil || built.Link == nil {
			t.Fatalf("GetReport: %+v, %v", built, err)
		}
		res, err := http.Get(*built.Link)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !bytes.Equal(got, want) || !strings.HasPrefix(string(got), "row,externalId,status,") {
			t.Errorf("report file:\n%s\nthe link serves (%d):\n%s", got, res.StatusCode, want)
		}
		k.run(t, "report", batchID).want(t, 2)
	})

	t.Run("malformed file exits 3 with the contract's message", func(t *testing.T) {
		bad := writeFile(t, "bad.csv", fmt.Sprintf("externalId,shareToken\n%s,\n", ids[0]))
		const message = "CSV validation failed: 1 error(s) found.\nRow 2: Missing required field 'shareToken'"
		r := k.run(t, "upload", bad, "--wait").want(t, 3)
		if want := "kycbatch: HTTP 400, code 0701010200: " + message + "\n"; r.stderr != want {
			t.Errorf("stderr:\n%q\nwant\n%q", r.stderr, want)
		}
		r = k.run(t, "--output", "json", "upload", bad).want(t, 3)
		var body struct{ Error map[string]any }
		if err := json.Unmarshal([]byte(r.stderr), &body); err != nil || body.Error["message"] != message || body.Error["code"] != client.CodeUploadInvalid {
			t.Errorf("stderr of a malformed upload: %v\n%s", err, r.stderr)
		}
	})

	t.Run("exit codes", func(t *testing.T) {
		k.run(t).want(t, 2)
		k.run(t, "frobnicate").want(t, 2)
		k.run(t, "status").want(t, 2)
		k.run(t, "--output", "yaml", "status", batchID).want(t, 2)
		k.run(t, "upload", filepath.Join(t.TempDir(), "missing.csv")).want(t, 2)
		k.run(t, "help").want(t, 0)
		r := k.run(t, "status", "f208a887-9fa6-4447-a52b-c1d6e089536f").want(t, 3)
		if !strings.Contains(r.stderr, "code 0701020100: batch not found (parameter batchId)") {
			t.Errorf("stderr: %s", r.stderr)
		}
		(cli{bin: bin, url: e.URL, key: "wrong-key"}).run(t, "status", batchID).want(t, 3)
		(cli{bin: bin, url: e.URL}).run(t, "status", batchID).want(t, 2) // no key
		(cli{bin: bin, url: "http://" + proctest.FreeAddr(t), key: key}).run(t, "status", batchID).want(t, 4)
	})
}

// TestBatchEndingBadlyExits5 runs upload --wait against a service whose
// batch ends cancelled.
func TestBatchEndingBadlyExits5(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"batchId":"b1","businessUuid":"u","status":"pending","totalRecords":2,"message":"File uploaded successfully. Processing will start shortly.","createdAt":"2025-10-08T11:40:20.796Z"}`)
			return
		}
		io.WriteString(w, `{"batchId":"b1","status":"cancelled","totalRecords":2,"processedRecords":1,"failedRecords":0,"summary":{"successfulRecords":1,"errors":[]}}`)
	}))
	defer srv.Close()
	k := cli{bin: proctest.Build(t, "."), url: srv.URL, key: "k-secret"}
	r := k.run(t, "upload", writeFile(t, "a.csv", "externalId,shareToken\n"), "--wait").want(t, 5)
	if !strings.Contains(r.stdout, "batch b1: cancelled\ntotal 2, processed 1, succeeded 1, failed 0\n") || !strings.Contains(r.stderr, "batch b1 ended cancelled") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
}
