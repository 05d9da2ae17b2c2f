package ingest

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// column identifies a known column of the file.
type column int

const (
	colExternalID column = iota
	colShareToken
	colApplicantLevel
	colCardToken
	numColumns
)

// columnNames are the canonical header names of the known columns.
var columnNames = [numColumns]string{
	colExternalID:     "externalId",
	colShareToken:     "shareToken",
	colApplicantLevel: "applicantLevel",
	colCardToken:      "cardProcessorPublicToken",
}

// requiredColumns are the columns a header must have, in the order their
// absence is reported.
var requiredColumns = [...]column{colExternalID, colShareToken}

// readHeader locates the known columns and reports whether the header is
// usable: rows are not checked against a header with problems.
func (p *parser) readHeader(fields []string) bool {
	before := p.out.ProblemCount
	for c := range p.cols {
		p.cols[c] = -1
	}
	var dup [numColumns]bool
	for i, name := range fields {
		c, known := lookupColumn(trim(name))
		switch {
		case !known:
		case p.cols[c] < 0:
			p.cols[c] = i
		case !dup[c]:
			dup[c] = true
			p.problem("Duplicate column '" + columnNames[c] + "'")
		}
	}
	for _, c := range requiredColumns {
		if p.cols[c] < 0 {
			p.problem("Missing required column '" + columnNames[c] + "'")
		}
	}
	if p.out.ProblemCount > before {
		return false
	}
	p.width = len(fields)
	return true
}

// lookupColumn finds the known column a header name stands for.
func lookupColumn(name string) (column, bool) {
	for c, canonical := range columnNames {
		if strings.EqualFold(name, canonical) {
			return column(c), true
		}
	}
	return 0, false
}

// checkRow validates a data row, reporting all of its problems, and keeps it
// while the file has no problem so far.
func (p *parser) checkRow(row int, fields []string) {
	if len(fields) != p.width {
		p.rowProblem(row, "Wrong number of fields")
		return
	}
	rec := Record{
		Row:                      row,
		ShareToken:               p.value(fields, colShareToken),
		ApplicantLevel:           p.value(fields, colApplicantLevel),
		CardProcessorPublicToken: p.value(fields, colCardToken),
	}
	rec.ExternalID = p.checkExternalID(row, p.value(fields, colExternalID))
	if rec.ShareToken == "" {
		p.rowProblem(row, "Missing required field 'shareToken'")
	} else {
		p.checkToken(row, "shareToken", rec.ShareToken, maxShareTokenBytes)
	}
	if rec.ApplicantLevel != "" && !validLevel(rec.ApplicantLevel) {
		p.rowProblem(row, "Invalid applicantLevel '"+excerpt(rec.ApplicantLevel)+"'")
	}
	if rec.CardProcessorPublicToken != "" {
		p.checkToken(row, "cardProcessorPublicToken", rec.CardProcessorPublicToken, maxCardTokenBytes)
	}
	switch {
	case p.out.ProblemCount > 0:
	case p.keep.emit != nil:
		p.keep.emit(rec)
	case p.keep.withoutToken:
		rec.ShareToken = ""
		fallthrough
	default:
		p.records = append(p.records, rec)
	}
}

// value returns the trimmed value of a known column, "" when the header
// lacks it. The value shares memory with the record's other fields, which
// costs nothing extra: the reader allocates a record's fields together.
func (p *parser) value(fields []string, c column) string {
	if i := p.cols[c]; i >= 0 {
		return trim(fields[i])
	}
	return ""
}

// checkExternalID validates an external id and returns it parsed.
func (p *parser) checkExternalID(row int, v string) uuid.UUID {
	if v == "" {
		p.rowProblem(row, "Missing required field 'externalId'")
		return uuid.Nil
	}
	id, ok := parseUUID(v)
	if !ok {
		p.rowProblem(row, "Invalid externalId '"+excerpt(v)+"': must be a UUID")
		return uuid.Nil
	}
	if first, dup := p.firstRow[id]; dup {
		p.rowProblem(row, "Duplicate externalId '"+excerpt(v)+"' (first seen on row "+strconv.Itoa(first)+")")
		return id
	}
	p.firstRow[id] = row
	return id
}

// parseUUID parses the hyphenated 36-character form of a UUID, in either
// case. uuid.Parse alone would also take forms such as "urn:uuid:..." or
// 32 bare hex digits, which are not what a batch file is meant to hold.
func parseUUID(v string) (uuid.UUID, bool) {
	if len(v) != 36 {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(v)
	return id, err == nil
}

// checkToken validates a token's length and characters. Its messages never
// include the value, which may be a secret.
func (p *parser) checkToken(row int, name, v string, maxBytes int) {
	if len(v) > maxBytes {
		p.rowProblem(row, "Invalid "+name+": longer than "+strconv.Itoa(maxBytes)+" characters")
	}
	if hasControl(v) {
		p.rowProblem(row, "Invalid "+name+": control characters are not allowed")
	}
}

// trim removes the spaces and tabs around a value.
func trim(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isBlank reports whether a record has no content, like ",,," or a line of
// spaces; such records are rows but not data rows.
func isBlank(fields []string) bool {
	for _, f := range fields {
		if trim(f) != "" {
			return false
		}
	}
	return true
}

// validLevel reports whether s matches ^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$.
func validLevel(s string) bool {
	if s == "" || len(s) > maxLevelBytes || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != ' ' && c != '-' {
			return false
		}
	}
	return true
}

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// hasControl reports whether s contains a control character. ASCII, the
// bulk of any token, is checked without decoding.
func hasControl(s string) bool {
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c < ' ' || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if unicode.IsControl(r) {
			return true
		}
		i += size
	}
	return false
}

// excerpt prepares a value for a message: control characters (a quoted
// newline would start a line of its own in the message) become U+FFFD, and
// the value is cut to maxEchoBytes on a rune boundary, with "…" marking the cut.
func excerpt(v string) string {
	cut := len(v) > maxEchoBytes
	if cut {
		n := maxEchoBytes
		for n > 0 && !utf8.RuneStart(v[n]) {
			n--
		}
		v = v[:n]
	}
	v = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return utf8.RuneError
		}
		return r
	}, v)
	if cut {
		v += "…"
	}
	return v
}
