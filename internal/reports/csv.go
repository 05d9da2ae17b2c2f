package reports

import (
	"encoding/csv"
	"io"
	"strconv"

	"github.com/kycbatch/kycbatch/internal/ingest"
)

// header is the report's first line, from the API contract.
var header = []string{"row", "externalId", "status", "applicantId", "reviewStatus", "errorCode", "errorMessage", "attempts", "processedAt"}

// csvWriter writes report lines. Every text cell goes through safeCell, and
// the share token is not among the columns: a report never carries it.
type csvWriter struct {
	w    *csv.Writer
	line []string
}

func newCSVWriter(w io.Writer) (*csvWriter, error) {
	cw := &csvWriter{w: csv.NewWriter(w), line: make([]string, len(header))}
	return cw, cw.w.Write(header)
}

func (c *csvWriter) write(r ingest.Result) error {
	c.line[0] = strconv.Itoa(r.Row)
	c.line[1] = r.ExternalID.String()
	c.line[2] = safeCell(r.Status)
	c.line[3] = safeCell(deref(r.ApplicantID))
	c.line[4] = safeCell(deref(r.ReviewStatus))
	c.line[5] = safeCell(deref(r.ErrorCode))
	c.line[6] = safeCell(deref(r.ErrorMessage))
	c.line[7] = strconv.Itoa(r.Attempts)
	c.line[8] = ""
	if r.ProcessedAt != nil {
		c.line[8] = r.ProcessedAt.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return c.w.Write(c.line)
}

func (c *csvWriter) flush() error {
	c.w.Flush()
	return c.w.Error()
}

// safeCell keeps a spreadsheet from running a cell as a formula: values that
// start with =, +, -, @, a tab or a carriage return (text from Sumsub, such
// as an error description) get a leading apostrophe (OWASP's CSV injection advice).
func safeCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
