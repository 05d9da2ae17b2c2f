package ingest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

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
