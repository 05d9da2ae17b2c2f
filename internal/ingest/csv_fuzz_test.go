package ingest

import (
	"bytes"
	"encoding/csv"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzParseCSV checks that ParseCSV never panics, reads its input to the
// end, does not depend on how the input is split into reads, keeps its
// counts consistent, and that a valid file's records survive being written
// out again and re-read.
func FuzzParseCSV(f *testing.F) {
	for _, seed := range []string{
		"",
		header + id1 + ",tok\n",
		"\xEF\xBB\xBF" + fullHeader + id1 + ",\"a,b\"\"c\",basic-kyc-level,card\r\n\r\n" + id2 + ",t,,\r\n",
		"note,shareToken,externalId\n\"x\ny\",t," + id1 + "\n,,\n" + id1 + ",t\"\n",
		header + "not-a-uuid,\n\xff\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bytes.NewReader(data)
		got, err := ParseCSV(src)
		if err != nil {
			t.Fatalf("ParseCSV: %v", err)
		}
		if src.Len() != 0 {
			t.Fatalf("ParseCSV left %d bytes unread", src.Len())
		}
		bytewise, err := ParseCSV(iotest.OneByteReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatalf("ParseCSV, one byte at a time: %v", err)
		}
		if diff := cmp.Diff(got, bytewise); diff != "" {
			t.Fatalf("ParseCSV differs when read one byte at a time (-whole +bytewise):\n%s", diff)
		}
		checkCounts(t, got)
		if got.Valid() {
			checkRoundTrip(t, got.Records)
		}
	})
}

// checkCounts checks the invariants between the fields of a result.
func checkCounts(t *testing.T, p Parsed) {
	t.Helper()
	if p.ProblemCount < len(p.Problems) || len(p.Problems) > maxRowMessages {
		t.Fatalf("ProblemCount %d with %d problems kept", p.ProblemCount, len(p.Problems))
	}
	if p.TooManyRows != (p.DataRows > MaxRows) {
		t.Fatalf("TooManyRows %t with %d data rows", p.TooManyRows, p.DataRows)
	}
	if !p.Valid() {
		if p.Records != nil {
			t.Fatalf("invalid file returned %d records", len(p.Records))
		}
		return
	}
	if len(p.Records) != p.DataRows {
		t.Fatalf("%d records from %d data rows", len(p.Records), p.DataRows)
	}
	for i, r := range p.Records {
		if r.Row < 2 || i > 0 && r.Row <= p.Records[i-1].Row {
			t.Fatalf("record %d is on row %d, after row %d", i, r.Row, p.Records[max(i-1, 0)].Row)
		}
	}
}

// checkRoundTrip writes records out as a file and requires that parsing it
// gives them back. Row numbers may differ, since blank lines are not written.
func checkRoundTrip(t *testing.T, records []Record) {
	t.Helper()
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(columnNames[:])
	for _, r := range records {
		w.Write([]string{r.ExternalID.String(), r.ShareToken, r.ApplicantLevel, r.CardProcessorPublicToken})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatalf("writing records: %v", err)
	}
	again, err := ParseCSV(&buf)
	if err != nil {
		t.Fatalf("ParseCSV of written records: %v", err)
	}
	if diff := cmp.Diff(records, again.Records, cmpopts.IgnoreFields(Record{}, "Row")); diff != "" {
		t.Fatalf("records changed when written and read again (-first +again):\n%s\nproblems: %q", diff, again.Problems)
	}
}
