package ingest

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

func TestParseCSVValid(t *testing.T) {
	u1, u2 := uuid.MustParse(id1), uuid.MustParse(id2)
	tests := []struct {
		name string
		in   string
		want []Record
	}{
		{
			name: "BOM",
			in:   "\xEF\xBB\xBF" + header + id1 + ",tok1\n",
			want: []Record{{Row: 2, ExternalID: u1, ShareToken: "tok1"}},
		},
		{
			name: "CRLF",
			in:   "externalId,shareToken\r\n" + id1 + ",tok1\r\n" + id2 + ",tok2\r\n",
			want: []Record{
				{Row: 2, ExternalID: u1, ShareToken: "tok1"},
				{Row: 3, ExternalID: u2, ShareToken: "tok2"},
			},
		},
		{
			name: "no final newline",
			in:   header + id1 + ",tok1",
			want: []Record{{Row: 2, ExternalID: u1, ShareToken: "tok1"}},
		},
		{
			name: "quoted newlines",
			in:   "externalId,shareToken,note\n" + id1 + ",tok1,\"one\ntwo\r\nthree\"\n" + id2 + ",tok2,x\n",
			want: []Record{
				{Row: 2, ExternalID: u1, ShareToken: "tok1"},
				{Row: 3, ExternalID: u2, ShareToken: "tok2"},
			},
		},
		{
			name: "quoted commas and quotes",
			in:   "externalId,shareToken,applicantLevel\n\"" + id1 + "\",\"a,b\"\"c\",\"basic-kyc-level\"\n",
			want: []Record{{Row: 2, ExternalID: u1, ShareToken: `a,b"c`, ApplicantLevel: "basic-kyc-level"}},
		},
		{
			name: "unknown columns",
			in:   "name,externalId,notes,shareToken,\nAnn," + id1 + ",x,tok1,\n",
			want: []Record{{Row: 2, ExternalID: u1, ShareToken: "tok1"}},
		},
		{
			name: "reordered columns",
			in:   "cardProcessorPublicToken,applicantLevel,shareToken,externalId\ncard-1,basic-kyc-level,tok1," + id1 + "\n",
			want: []Record{{Row: 2, ExternalID: u1, ShareToken: "tok1", ApplicantLevel: "basic-kyc-level", CardProcessorPublicToken: "card-1"}},
		},
		{
			name: "case-insensitive header with spaces",
			in:   " EXTERNALID ,\tsharetoken\t, ApplicantLevel,CARDPROCESSORPUBLICTOKEN\n" + id1 + ",tok1,lvl,card\n",
			want: []Record{{Row: 2, ExternalID: u1, ShareToken: "tok1", ApplicantLevel: "lvl", CardProcessorPublicToken: "card"}},
		},
		{
			name: "values trimmed",
			in:   fullHeader + "  " + id1 + "\t, tok1 ,\t level 1 \t, card \n",
			want: []Record{{Row: 2, ExternalID: u1, ShareToken: "tok1", ApplicantLevel: "level 1", CardProcessorPublicToken: "card"}},
		},
		{
			name: "optional values empty",
			in:   fullHeader + id1 + ",tok1,,\n" + id2 + ",tok2, , \t\n",
			want: []Record{
				{Row: 2, ExternalID: u1, ShareToken: "tok1"},
				{Row: 3, ExternalID: u2, ShareToken: "tok2"},
			},
		},
		{
			name: "upper-case external id made canonical",
			in:   header + strings.ToUpper(id1) + ",tok1\n",
			want: []Record{{Row: 2, ExternalID: u1, ShareToken: "tok1"}},
		},
		{
			name: "blank lines and comma-only lines",
			in:   header + "\n" + id1 + ",tok1\n,\n,,,\n \t, \n\r\n" + id2 + ",tok2\n\n",
			want: []Record{
				{Row: 3, ExternalID: u1, ShareToken: "tok1"},
				{Row: 8, ExternalID: u2, ShareToken: "tok2"},
			},
		},
		{
			name: "blank lines before the header",
			in:   "\n,\n" + header + id1 + ",tok1\n",
			want: []Record{{Row: 4, ExternalID: u1, ShareToken: "tok1"}},
		},
		{
			name: "values at their length limits",
			in: fullHeader + id1 + "," + strings.Repeat("t", 4096) + "," + strings.Repeat("L", 128) +
				"," + strings.Repeat("c", 255) + "\n",
			want: []Record{{
				Row: 2, ExternalID: u1, ShareToken: strings.Repeat("t", 4096),
				ApplicantLevel: strings.Repeat("L", 128), CardProcessorPublicToken: strings.Repeat("c", 255),
			}},
		},
		{
			name: "non-ASCII tokens",
			in:   fullHeader + id1 + ",tök€n,0 a.b_c-d,kärte\n",
			want: []Record{{Row: 2, ExternalID: u1, ShareToken: "tök€n", ApplicantLevel: "0 a.b_c-d", CardProcessorPublicToken: "kärte"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parse(t, tt.in)
			want := Parsed{Records: tt.want, DataRows: len(tt.want)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseCSV(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// TestParseCSVRowNumbers pins the row numbers a spreadsheet shows, which the
// CSV reader does not give directly: it skips empty lines, and a record with
// quoted newlines spans several lines but is one row.
func TestParseCSVRowNumbers(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []int
	}{
		{
			name: "empty line between rows",
			in:   header + id1 + ",t\n\n" + id2 + ",t\n",
			want: []int{2, 4},
		},
		{
			name: "quoted field spanning three lines",
			in:   "externalId,shareToken,note\n" + id1 + ",t,\"a\nb\nc\"\n" + id2 + ",t,x\n",
			want: []int{2, 3},
		},
		{
			name: "multi-line field before the last field, then empty lines",
			in:   "externalId,note,shareToken\n" + id1 + ",\"a\r\n\r\nb\",t\r\n\r\n\r\n" + id2 + ",x,t\r\n",
			want: []int{2, 5},
		},
		{
			name: "multi-line last field ending in a newline",
			in:   "externalId,shareToken,note\n" + id1 + ",t,\"a\n\"\n\n" + id2 + ",t,x\n" + id3 + ",t,y\n",
			want: []int{2, 4, 5},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parse(t, tt.in)
			var rows []int
			for _, r := range got.Records {
				rows = append(rows, r.Row)
			}
			if diff := cmp.Diff(tt.want, rows); diff != "" {
				t.Errorf("rows mismatch (-want +got):\n%s\nproblems: %q", diff, got.Problems)
			}
		})
	}
}

func TestParseCSVRowLimit(t *testing.T) {
	t.Run("MaxRows accepted", func(t *testing.T) {
		got := parse(t, batchFile(MaxRows)+"\n,,,\n")
		if !got.Valid() || len(got.Records) != MaxRows || got.DataRows != MaxRows {
			t.Fatalf("got valid %t, %d records, %d data rows; want true, %d, %d (problems %q)",
				got.Valid(), len(got.Records), got.DataRows, MaxRows, MaxRows, got.Problems)
		}
		if last := got.Records[MaxRows-1]; last.Row != MaxRows+1 || last.ExternalID != uuid.MustParse(testID(MaxRows-1)) {
			t.Errorf("last record = row %d, id %s; want row %d, id %s", last.Row, last.ExternalID, MaxRows+1, testID(MaxRows-1))
		}
	})
	t.Run("one row too many", func(t *testing.T) {
		got := parse(t, batchFile(MaxRows+1))
		want := Parsed{DataRows: MaxRows + 1, TooManyRows: true}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("rows past the limit not validated", func(t *testing.T) {
		got := parse(t, batchFile(MaxRows)+",\nx\n")
		want := Parsed{DataRows: MaxRows + 1, TooManyRows: true}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("invalid UTF-8 past the limit", func(t *testing.T) {
		got := parse(t, batchFile(MaxRows+10)+"\xff\n")
		want := Parsed{Problems: []string{"File is not valid UTF-8"}, ProblemCount: 1}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestParsedMessage(t *testing.T) {
	t.Run("two problems", func(t *testing.T) {
		in := header + id1 + ",t\n" + id2 + ",t\n\n" + id3 + ",\n" + strings.Repeat(",,\n", 6) + " ,t\n"
		want := "CSV validation failed: 2 error(s) found.\n" +
			"Row 5: Missing required field 'shareToken'\n" +
			"Row 12: Missing required field 'externalId'"
		if diff := cmp.Diff(want, parse(t, in).Message()); diff != "" {
			t.Errorf("Message() mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("exactly maxRowMessages", func(t *testing.T) {
		got := parse(t, badRows(maxRowMessages)).Message()
		lines := strings.Split(got, "\n")
		if len(lines) != maxRowMessages+1 || strings.Contains(got, "more") {
			t.Errorf("Message() has %d lines, last %q; want %d lines and no \"more\"", len(lines), lines[len(lines)-1], maxRowMessages+1)
		}
	})
	t.Run("more than maxRowMessages", func(t *testing.T) {
		got := parse(t, badRows(150))
		if got.ProblemCount != 150 || len(got.Problems) != maxRowMessages {
			t.Fatalf("ProblemCount %d, %d problems kept; want 150, %d", got.ProblemCount, len(got.Problems), maxRowMessages)
		}
		lines := strings.Split(got.Message(), "\n")
		want := []string{
			"CSV validation failed: 150 error(s) found.",
			"Row 2: Missing required field 'shareToken'",
			"Row 101: Missing required field 'shareToken'",
			"...and 50 more",
		}
		if len(lines) != 102 {
			t.Fatalf("Message() has %d lines, want 102", len(lines))
		}
		if diff := cmp.Diff(want, []string{lines[0], lines[1], lines[100], lines[101]}); diff != "" {
			t.Errorf("Message() lines 1, 2, 101 and 102 mismatch (-want +got):\n%s", diff)
		}
	})
}

// TestParseCSVConsumesInput checks that the input is read to its end even
// when the verdict is known early, since callers hash and store what is read.
func TestParseCSVConsumesInput(t *testing.T) {
	tests := map[string]string{
		"too many rows":    batchFile(MaxRows + 100),
		"bad header":       "name\n" + batchFile(100),
		"malformed header": "a\"b\n" + batchFile(100),
		"invalid UTF-8":    "\xff" + batchFile(100),
		"over-long line":   header + strings.Repeat("x", 3<<20) + "\n" + batchFile(100),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			src := strings.NewReader(in)
			got, err := ParseCSV(struct{ io.Reader }{src})
			if err != nil {
				t.Fatalf("ParseCSV: %v", err)
			}
			if got.Valid() {
				t.Errorf("ParseCSV found the file valid")
			}
			if src.Len() != 0 {
				t.Errorf("ParseCSV left %d of %d bytes unread", src.Len(), len(in))
			}
		})
	}
}

func TestParseCSVReadError(t *testing.T) {
	errRead := errors.New("connection reset")
	failAfter := func(s string) io.Reader {
		return io.MultiReader(strings.NewReader(s), iotest.ErrReader(errRead))
	}
	tests := map[string]io.Reader{
		"at once":                   iotest.ErrReader(errRead),
		"mid-row":                   failAfter(header + id1 + ",to"),
		"after a complete row":      failAfter(header + id1 + ",tok\n"),
		"after a malformed row":     failAfter(header + id1 + ",t\"k\n"),
		"after too many rows":       failAfter(batchFile(MaxRows + 1)),
		"after invalid UTF-8":       failAfter(header + "\xff\n"),
		"inside a long line":        failAfter(header + strings.Repeat("x", 2<<20)),
		"one byte at a time, early": iotest.OneByteReader(failAfter("\xEF\xBB")),
	}
	for name, r := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseCSV(r)
			if !errors.Is(err, errRead) {
				t.Fatalf("ParseCSV error = %v, want %v", err, errRead)
			}
			if diff := cmp.Diff(Parsed{}, got); diff != "" {
				t.Errorf("ParseCSV result with an error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func BenchmarkParseCSV5000(b *testing.B) {
	in := batchFile(MaxRows)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := ParseCSV(strings.NewReader(in))
		if err != nil || !got.Valid() {
			b.Fatalf("ParseCSV = valid %t, %v", got.Valid(), err)
		}
	}
}
