package ingest

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

const (
	id1 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	id2 = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
	id3 = "6ba7b812-9dad-11d1-80b4-00c04fd430c8"

	header     = "externalId,shareToken\n"
	fullHeader = "externalId,shareToken,applicantLevel,cardProcessorPublicToken\n"
)

// parse parses in whole and one byte at a time, requires both to agree, and
// returns the result.
func parse(t testing.TB, in string) Parsed {
	t.Helper()
	got, err := ParseCSV(strings.NewReader(in))
	if err != nil {
		t.Fatalf("ParseCSV: %v", err)
	}
	bytewise, err := ParseCSV(iotest.OneByteReader(strings.NewReader(in)))
	if err != nil {
		t.Fatalf("ParseCSV, one byte at a time: %v", err)
	}
	if diff := cmp.Diff(got, bytewise); diff != "" {
		t.Fatalf("ParseCSV differs when read one byte at a time (-whole +bytewise):\n%s", diff)
	}
	return got
}

// testID returns a distinct, valid external id for each i.
func testID(i int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
}

// testToken returns a share token of realistic length (about 250 bytes).
func testToken(i int) string {
	return fmt.Sprintf("_act-sbx-jwt-%06d-", i) + strings.Repeat("eyJhbGciOiJIUzI1NiJ9", 12)
}

// batchFile returns a valid file with rows data rows.
func batchFile(rows int) string {
	var b strings.Builder
	b.WriteString(fullHeader)
	for i := range rows {
		fmt.Fprintf(&b, "%s,%s,basic-kyc-level,card-%d\n", testID(i), testToken(i), i)
	}
	return b.String()
}

// badRows returns a file whose n data rows each lack a share token.
func badRows(n int) string {
	var b strings.Builder
	b.WriteString(header)
	for i := range n {
		b.WriteString(testID(i) + ",\n")
	}
	return b.String()
}

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

func TestParseCSVProblems(t *testing.T) {
	long := strings.Repeat("x", 63) + "é" + "yyy" // the cut at 64 bytes falls inside "é"
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "wrong number of fields",
			in:   header + id1 + ",t,extra\n" + id2 + "\n" + ",t,x\n",
			want: []string{
				"Row 2: Wrong number of fields",
				"Row 3: Wrong number of fields",
				"Row 4: Wrong number of fields",
			},
		},
		{
			name: "bare quote, then parsing goes on",
			in:   header + id1 + ",to\"k\n" + id2 + ",\n",
			want: []string{
				`Row 2: Malformed CSV: bare " in non-quoted-field`,
				"Row 3: Missing required field 'shareToken'",
			},
		},
		{
			name: "text after a closing quote",
			in:   header + "\"" + id1 + "\"x,t\n" + id2 + ",\n",
			want: []string{
				`Row 2: Malformed CSV: extraneous or missing " in quoted-field`,
				"Row 3: Missing required field 'shareToken'",
			},
		},
		{
			name: "malformed multi-line record",
			in:   header + id1 + ",\"a\nb\"x\n\n,t\n",
			want: []string{
				`Row 2: Malformed CSV: extraneous or missing " in quoted-field`,
				"Row 4: Missing required field 'externalId'",
			},
		},
		{
			name: "quote never closed",
			in:   header + id1 + ",t\n" + id2 + ",\"tok\n",
			want: []string{`Row 3: Malformed CSV: extraneous or missing " in quoted-field`},
		},
		{
			name: "many malformed rows",
			in:   header + strings.Repeat("a\"b\n", 3),
			want: []string{
				`Row 2: Malformed CSV: bare " in non-quoted-field`,
				`Row 3: Malformed CSV: bare " in non-quoted-field`,
				`Row 4: Malformed CSV: bare " in non-quoted-field`,
			},
		},
		{
			name: "missing external id",
			in:   header + " ,t\n",
			want: []string{"Row 2: Missing required field 'externalId'"},
		},
		{
			name: "invalid external id",
			in:   header + "not-a-uuid,t\n",
			want: []string{"Row 2: Invalid externalId 'not-a-uuid': must be a UUID"},
		},
		{
			name: "echoed values cannot add lines to the message",
			in:   header + "\"a\nb\",t\n",
			want: []string{"Row 2: Invalid externalId 'a\ufffdb': must be a UUID"},
		},
		{
			name: "external id in other UUID notations",
			in: header + "urn:uuid:" + id1 + ",t\n{" + id1 + "},t\n" + strings.ReplaceAll(id1, "-", "") + ",t\n" +
				strings.Replace(id1, "-", "x", 1) + ",t\n",
			want: []string{
				"Row 2: Invalid externalId 'urn:uuid:" + id1 + "': must be a UUID",
				"Row 3: Invalid externalId '{" + id1 + "}': must be a UUID",
				"Row 4: Invalid externalId '" + strings.ReplaceAll(id1, "-", "") + "': must be a UUID",
				"Row 5: Invalid externalId '" + strings.Replace(id1, "-", "x", 1) + "': must be a UUID",
			},
		},
		{
			name: "long invalid external id cut on a character boundary",
			in:   header + long + ",t\n" + strings.Repeat("z", 64) + ",t\n",
			want: []string{
				"Row 2: Invalid externalId '" + strings.Repeat("x", 63) + "…': must be a UUID",
				"Row 3: Invalid externalId '" + strings.Repeat("z", 64) + "': must be a UUID",
			},
		},
		{
			name: "duplicate external id",
			in:   header + id1 + ",t\n" + id2 + ",t\n" + strings.ToUpper(id1) + ",t\n" + id1 + ",t\n",
			want: []string{
				"Row 4: Duplicate externalId '" + strings.ToUpper(id1) + "' (first seen on row 2)",
				"Row 5: Duplicate externalId '" + id1 + "' (first seen on row 2)",
			},
		},
		{
			name: "duplicate of a row with problems",
			in:   header + id1 + ",\n" + id1 + ",t\n",
			want: []string{
				"Row 2: Missing required field 'shareToken'",
				"Row 3: Duplicate externalId '" + id1 + "' (first seen on row 2)",
			},
		},
		{
			name: "missing share token",
			in:   header + id1 + ",\t \n",
			want: []string{"Row 2: Missing required field 'shareToken'"},
		},
		{
			name: "share token too long",
			in:   header + id1 + "," + strings.Repeat("t", 4097) + "\n",
			want: []string{"Row 2: Invalid shareToken: longer than 4096 characters"},
		},
		{
			name: "share token with control characters",
			in:   header + id1 + ",\"to\nk\"\n" + id2 + ",to\tk\n" + id3 + ",to\u0085k\n",
			want: []string{
				"Row 2: Invalid shareToken: control characters are not allowed",
				"Row 3: Invalid shareToken: control characters are not allowed",
				"Row 4: Invalid shareToken: control characters are not allowed",
			},
		},
		{
			name: "share token too long and with control characters",
			in:   header + id1 + "," + strings.Repeat("t", 4097) + "\x7f\n",
			want: []string{
				"Row 2: Invalid shareToken: longer than 4096 characters",
				"Row 2: Invalid shareToken: control characters are not allowed",
			},
		},
		{
			name: "invalid applicant level",
			in: "externalId,shareToken,applicantLevel\n" + id1 + ",t,-level\n" + id2 + ",t,level!\n" +
				id3 + ",t,lévél\n" + testID(4) + ",t," + strings.Repeat("L", 129) + "\n",
			want: []string{
				"Row 2: Invalid applicantLevel '-level'",
				"Row 3: Invalid applicantLevel 'level!'",
				"Row 4: Invalid applicantLevel 'lévél'",
				"Row 5: Invalid applicantLevel '" + strings.Repeat("L", 64) + "…'",
			},
		},
		{
			name: "invalid card processor public token",
			in: "externalId,shareToken,cardProcessorPublicToken\n" + id1 + ",t," + strings.Repeat("c", 256) + "\n" +
				id2 + ",t,\"ca\r\nrd\"\n",
			want: []string{
				"Row 2: Invalid cardProcessorPublicToken: longer than 255 characters",
				"Row 3: Invalid cardProcessorPublicToken: control characters are not allowed",
			},
		},
		{
			name: "all problems of a row, in order",
			in:   "cardProcessorPublicToken,applicantLevel,shareToken,externalId\n" + strings.Repeat("c", 256) + ",!,\"t\x01\",\n",
			want: []string{
				"Row 2: Missing required field 'externalId'",
				"Row 2: Invalid shareToken: control characters are not allowed",
				"Row 2: Invalid applicantLevel '!'",
				"Row 2: Invalid cardProcessorPublicToken: longer than 255 characters",
			},
		},
		{
			name: "problems in file order",
			in:   header + id1 + ",\n" + "x,t,u\n" + "\n" + "a\"\n" + ",t\n" + id2 + ",t\n",
			want: []string{
				"Row 2: Missing required field 'shareToken'",
				"Row 3: Wrong number of fields",
				`Row 5: Malformed CSV: bare " in non-quoted-field`,
				"Row 6: Missing required field 'externalId'",
			},
		},
		{
			name: "missing external id column",
			in:   "shareToken,externalID2\nt,x\n",
			want: []string{"Missing required column 'externalId'"},
		},
		{
			name: "missing share token column",
			in:   "externalId\n" + id1 + "\n",
			want: []string{"Missing required column 'shareToken'"},
		},
		{
			name: "missing both columns",
			in:   "name,level\nAnn,x\n",
			want: []string{"Missing required column 'externalId'", "Missing required column 'shareToken'"},
		},
		{
			name: "duplicate column",
			in:   "externalId,shareToken, EXTERNALID\n" + id1 + ",t," + id2 + "\n",
			want: []string{"Duplicate column 'externalId'"},
		},
		{
			name: "duplicate column reported once",
			in:   "shareToken,externalId,shareToken,sharetoken,applicantLevel,applicantlevel\n",
			want: []string{"Duplicate column 'shareToken'", "Duplicate column 'applicantLevel'"},
		},
		{
			name: "duplicate and missing columns",
			in:   "externalId,externalId\n" + id1 + "," + id1 + "\n",
			want: []string{"Duplicate column 'externalId'", "Missing required column 'shareToken'"},
		},
		{
			name: "malformed header",
			in:   "externalId,share\"Token\n" + id1 + ",\n",
			want: []string{`Row 1: Malformed CSV: bare " in non-quoted-field`},
		},
		{name: "empty file", in: "", want: []string{"File is empty"}},
		{name: "BOM only", in: "\xEF\xBB\xBF", want: []string{"File is empty"}},
		{name: "blank lines only", in: "\xEF\xBB\xBF\n\r\n \n,,\n\t\n", want: []string{"File is empty"}},
		{name: "header only", in: header, want: []string{"File contains no data rows"}},
		{name: "header and blank lines", in: "\n" + header + "\n, \n\n", want: []string{"File contains no data rows"}},
		{
			name: "invalid UTF-8 in the header",
			in:   "externalId,share\xffToken\n" + id1 + ",t\n",
			want: []string{"File is not valid UTF-8"},
		},
		{
			name: "invalid UTF-8 in a field after other problems",
			in:   header + ",\n,\n" + id1 + ",t\xc0\xafk\n",
			want: []string{"File is not valid UTF-8"},
		},
		{
			name: "UTF-16 surrogate",
			in:   header + id1 + ",t\xed\xa0\x80k\n",
			want: []string{"File is not valid UTF-8"},
		},
		{
			name: "character cut at the end of the file",
			in:   header + id1 + ",t\xe2\x82",
			want: []string{"File is not valid UTF-8"},
		},
		{
			name: "invalid UTF-8 after a bad header",
			in:   "name\nx\n\xff\n",
			want: []string{"File is not valid UTF-8"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parse(t, tt.in)
			if diff := cmp.Diff(tt.want, got.Problems); diff != "" {
				t.Errorf("ParseCSV(%q) problems mismatch (-want +got):\n%s", tt.in, diff)
			}
			if got.ProblemCount != len(tt.want) || got.Records != nil || got.TooManyRows {
				t.Errorf("ParseCSV(%q) = ProblemCount %d, %d records, TooManyRows %t; want %d, none, false",
					tt.in, got.ProblemCount, len(got.Records), got.TooManyRows, len(tt.want))
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

func TestParseCSVNeverEchoesShareToken(t *testing.T) {
	tokens := []string{
		"TOPSECRET\x01VALUE",
		strings.Repeat("Zq", 2500),
		"SECRET\u200bWITH\u0085CONTROL",
	}
	for _, tok := range tokens {
		quoted := `"` + tok + `"`
		in := fullHeader +
			id1 + "," + quoted + ",,\n" + // bad token alone
			"not-a-uuid," + quoted + ",!,\x02\n" + // with every other problem
			id1 + "," + quoted + ",,\n" + // duplicate id
			",\"" + tok + `x"y` + "\",,\n" + // malformed
			id2 + "," + quoted + "\n" // wrong number of fields
		got := parse(t, in)
		if got.ProblemCount == 0 {
			t.Fatalf("no problems found in %q", in)
		}
		if msg := got.Message(); strings.Contains(msg, tok[:6]) {
			t.Errorf("Message() shows the share token:\n%s", msg)
		}
	}
}

func TestParseCSVLongLine(t *testing.T) {
	// line returns a data row of exactly n bytes, newline excluded.
	line := func(n int) string {
		prefix := id1 + ",t,"
		return prefix + strings.Repeat("n", n-len(prefix))
	}
	const tooLong = "Row is longer than 1048576 bytes"
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "at the limit", in: "externalId,shareToken,note\n" + line(maxLineBytes) + "\n"},
		{name: "at the limit, CRLF", in: "externalId,shareToken,note\r\n" + line(maxLineBytes-1) + "\r\n"},
		{
			name: "one byte over the limit",
			in:   "externalId,shareToken,note\n" + line(maxLineBytes+1) + "\n",
			want: []string{"Row 2: " + tooLong},
		},
		{
			name: "2 MiB single line after problems",
			in:   "externalId,shareToken,note\n,t,x\n\n" + line(2<<20) + "\n" + id2 + ",,\n",
			want: []string{"Row 2: Missing required field 'externalId'", "Row 4: " + tooLong},
		},
		{
			name: "2 MiB header",
			in:   strings.Repeat("h", 2<<20) + "\n",
			want: []string{"Row 1: " + tooLong},
		},
		{
			name: "2 MiB line in a multi-line record",
			in:   "externalId,shareToken,note\n" + id1 + ",t,\"a\n" + strings.Repeat("b", 2<<20) + "\"\n",
			want: []string{"Row 2: " + tooLong},
		},
		{
			name: "2 MiB line with a syntax error",
			in:   header + id1 + ",t\n" + id2 + ",t\"" + strings.Repeat("b", 2<<20) + "\n",
			want: []string{`Row 3: Malformed CSV: bare " in non-quoted-field`, "Row 3: " + tooLong},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.NewReader(tt.in)
			got, err := ParseCSV(struct{ io.Reader }{src}) // hide WriterTo, as an HTTP body does
			if err != nil {
				t.Fatalf("ParseCSV: %v", err)
			}
			if diff := cmp.Diff(tt.want, got.Problems); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
			if src.Len() != 0 {
				t.Errorf("ParseCSV left %d bytes unread", src.Len())
			}
		})
	}
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
