package ingest

import (
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

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
