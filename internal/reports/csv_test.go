package reports

import (
	"bytes"
	"encoding/csv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/ingest"
)

func TestSafeCell(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"},
		{"+1+1", "'+1+1"},
		{"-2+3", "'-2+3"},
		{"@SUM(A1)", "'@SUM(A1)"},
		{"\tcmd", "'\tcmd"},
		{"\rcmd", "'\rcmd"},
		{"a=b", "a=b"},
		{"'quoted", "'quoted"},
	}
	for _, tt := range tests {
		if got := safeCell(tt.in); got != tt.want {
			t.Errorf("safeCell(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestCSVWriterNeutralisesSumsubText writes records whose Sumsub-given fields
// start with formula characters and reads the CSV back.
func TestCSVWriterNeutralisesSumsubText(t *testing.T) {
	str := func(s string) *string { return &s }
	ext := uuid.MustParse("6f1c2f5e-1c1a-4c55-9d3e-1a2b3c4d5e6f")
	at := time.Date(2025, 10, 8, 11, 40, 20, 796000000, time.UTC)
	records := []ingest.Result{
		{Row: 2, ExternalID: ext, Status: "succeeded", ApplicantID: str("=cmd|' /C calc'!A0"), ReviewStatus: str("completed"), Attempts: 1, ProcessedAt: &at},
		{Row: 3, ExternalID: ext, Status: "failed", ErrorCode: str("SUMSUB_X"), ErrorMessage: str("-1+2, \"quoted\"\nnext line"), Attempts: 2, ProcessedAt: &at},
		{Row: 4, ExternalID: ext, Status: "pending"},
	}
	var buf bytes.Buffer
	w, err := newCSVWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		if err := w.write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	got, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	id := ext.String()
	want := [][]string{
		header,
		{"2", id, "succeeded", "'=cmd|' /C calc'!A0", "completed", "", "", "1", "2025-10-08T11:40:20.796Z"},
		{"3", id, "failed", "", "", "SUMSUB_X", "'-1+2, \"quoted\"\nnext line", "2", "2025-10-08T11:40:20.796Z"},
		{"4", id, "pending", "", "", "", "", "0", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CSV (-want +got):\n%s", diff)
	}
}
