package ingest

import (
	"fmt"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
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
