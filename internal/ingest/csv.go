package ingest

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Limits of an upload. They are part of the API contract, so clients can
// rely on them and changing one is a breaking change.
const (
	// MaxFileBytes is the largest upload accepted. ParseCSV does not enforce
	// it: callers cut the input at MaxFileBytes+1 bytes to detect excess.
	MaxFileBytes = 10 * 1024 * 1024
	// MaxRows is the most data rows one batch may hold.
	MaxRows = 5000
	// maxRowMessages is how many problem messages are kept and shown; any
	// further problems are only counted, which keeps memory bounded.
	maxRowMessages = 100
)

// Limits of single values and lines.
const (
	maxLineBytes       = 1 << 20 // a longer line is rejected before it is buffered
	maxShareTokenBytes = 4096
	maxCardTokenBytes  = 255
	maxLevelBytes      = 128
	maxEchoBytes       = 64 // values echoed in messages are cut to this
)

// File-level problem messages of the contract.
const (
	msgInvalidUTF8 = "File is not valid UTF-8"
	msgEmpty       = "File is empty"
	msgNoDataRows  = "File contains no data rows"
)

// bom is the UTF-8 byte order mark some spreadsheet programs write first.
var bom = []byte{0xEF, 0xBB, 0xBF}

// errInvalidUTF8 and errLineTooLong stop the CSV reader; ParseCSV turns them
// into problems rather than returning them.
var (
	errInvalidUTF8 = errors.New("ingest: input is not valid UTF-8")
	errLineTooLong = errors.New("ingest: input line too long")
)

// Record is one data row of a batch file, with its values trimmed and its
// external id in canonical form, ready to be stored.
type Record struct {
	// Row is the row number a spreadsheet shows for the record (the header
	// is row 1 when nothing precedes it), so users can find it in their file.
	Row int
	// ExternalID is the caller's id of the applicant.
	ExternalID uuid.UUID
	// ShareToken is a secret granting access to the applicant's data: it
	// must never be put in an error message or a log.
	ShareToken string
	// ApplicantLevel is the Sumsub verification level; "" means Sumsub's
	// default level.
	ApplicantLevel string
	// CardProcessorPublicToken links the applicant to a card; "" means none.
	CardProcessorPublicToken string
}

// Parsed is the verdict on a whole upload. Only the first maxRowMessages
// problem messages are kept, while ProblemCount counts them all, so that a
// file with thousands of bad rows costs no more memory than one with a
// hundred and the message can still tell how many there are.
type Parsed struct {
	// Records holds the data rows in file order, but only when the file is
	// Valid, so that no part of a rejected batch can be acted upon.
	Records []Record
	// DataRows counts the non-blank rows after the header that were read
	// before parsing stopped; it is MaxRows+1 when TooManyRows is set.
	DataRows int
	// TooManyRows reports more than MaxRows data rows. Rows past the limit
	// are not validated, since the file is rejected anyway.
	TooManyRows bool
	// Problems holds, in file order, the first maxRowMessages validation
	// messages: file-level ones and "Row N: ..." ones.
	Problems []string
	// ProblemCount is the number of problems found, including those not kept
	// in Problems.
	ProblemCount int
}

// Valid reports whether the upload can be accepted as a batch.
func (p Parsed) Valid() bool {
	return p.ProblemCount == 0 && !p.TooManyRows
}

// Message renders the problems as the API contract's error message: a count,
// the kept messages one per line and, when some were not kept, a last line
// telling how many more there are.
func (p Parsed) Message() string {
	var b strings.Builder
	fmt.Fprintf(&b, "CSV validation failed: %d error(s) found.", p.ProblemCount)
	for _, m := range p.Problems {
		b.WriteByte('\n')
		b.WriteString(m)
	}
	if more := p.ProblemCount - len(p.Problems); more > 0 {
		fmt.Fprintf(&b, "\n...and %d more", more)
	}
	return b.String()
}

// ParseCSV reads a batch file from r to its end and validates it. It always
// consumes r fully, even once the verdict is known, because callers hash and
// store the upload as it is read; memory stays bounded whatever the input.
//
// Problems with the file's content are reported in the Parsed result. The
// error is non-nil only when reading r fails; it wraps the reader's error.
func ParseCSV(r io.Reader) (Parsed, error) {
	return parseKeeping(r, keep{})
}

// keep says what a parse does with each valid record (while the file has
// no problem so far).
type keep struct {
	// withoutToken keeps records without their share token: an upload holds
	// what its checks need, not the bulk of the file.
	withoutToken bool
	// emit, when set, is handed each record instead (nothing is kept): the
	// second read of a validated file streams its records.
	emit func(Record)
}

// parseKeeping is ParseCSV, keeping records as k says.
func parseKeeping(r io.Reader, k keep) (Parsed, error) {
	src := bufio.NewReader(r)
	if err := skipBOM(src); err != nil {
		return Parsed{}, readError(err)
	}
	in := &inputGuard{src: src}
	p := newParser(in)
	p.keep = k
	err := p.run()
	if err == nil {
		err = in.drain()
	}
	if errors.Is(err, errInvalidUTF8) {
		if _, err := io.Copy(io.Discard, src); err != nil {
			return Parsed{}, readError(err)
		}
		return Parsed{Problems: []string{msgInvalidUTF8}, ProblemCount: 1}, nil
	}
	if err != nil {
		return Parsed{}, readError(err)
	}
	return p.result(), nil
}

// readError wraps a failure to read the upload, keeping it inspectable with
// errors.Is and errors.As.
func readError(err error) error {
	return fmt.Errorf("ingest: reading CSV: %w", err)
}

// skipBOM drops a leading byte order mark.
func skipBOM(src *bufio.Reader) error {
	b, err := src.Peek(len(bom))
	if bytes.Equal(b, bom) {
		_, err = src.Discard(len(bom))
		return err
	}
	if err == io.EOF {
		return nil
	}
	return err
}

// parser validates the records of one file as the CSV reader yields them.
type parser struct {
	r        *csv.Reader
	in       *inputGuard
	out      Parsed
	cols     [numColumns]int   // field index of each known column, -1 when absent
	width    int               // fields in the header; 0 until a usable header is read
	row      int               // row number of the last record read
	lastLine int               // input line on which the last record read ends
	firstRow map[uuid.UUID]int // row on which each external id was first seen
	records  []Record
	keep     keep
}

// newParser returns a parser reading from in. The CSV reader is left lenient
// about field counts and strict about quotes, so that each row's problems
// can be told in the contract's words.
func newParser(in *inputGuard) *parser {
	r := csv.NewReader(in)
	r.FieldsPerRecord = -1 // field counts are checked per row, with the contract's message
	r.ReuseRecord = true
	return &parser{r: r, in: in, firstRow: make(map[uuid.UUID]int)}
}

// run reads records until the input ends or nothing more can change the
// verdict. It returns an error only when the input could not be read or is
// not valid UTF-8.
//
// It cannot loop forever: every Read consumes at least one line or returns
// an error other than a *csv.ParseError, and the guard's errors are sticky.
func (p *parser) run() error {
	for {
		fields, err := p.r.Read()
		var more bool
		if err == nil {
			more = p.record(fields)
		} else {
			more, err = p.failed(fields, err)
		}
		if !more {
			return err
		}
	}
}

// failed handles an error of the CSV reader, given with the partial record
// read. It reports whether to read on, and returns the error when the input
// could not be read or is not valid UTF-8.
func (p *parser) failed(partial []string, err error) (bool, error) {
	var perr *csv.ParseError
	switch {
	case err == io.EOF:
		p.finish()
		return false, nil
	case errors.As(err, &perr):
		return p.malformed(perr), nil
	case errors.Is(err, errLineTooLong):
		p.rowProblem(p.longLineRow(partial), "Row is longer than "+strconv.Itoa(maxLineBytes)+" bytes")
		return false, nil
	}
	return false, err
}

// record handles a well-formed record and reports whether to read on.
func (p *parser) record(fields []string) bool {
	last := len(fields) - 1
	start, _ := p.r.FieldPos(0)
	lastStart, _ := p.r.FieldPos(last)
	row := p.advance(start, lastStart+strings.Count(fields[last], "\n"))
	switch {
	case isBlank(fields):
		return true
	case p.width == 0:
		return p.readHeader(fields)
	case !p.countDataRow():
		return false
	}
	p.checkRow(row, fields)
	return true
}

// malformed handles a record with a CSV syntax error and reports whether to
// read on. The reader resumes on the line after the error.
func (p *parser) malformed(perr *csv.ParseError) bool {
	row := p.advance(perr.StartLine, perr.Line)
	if p.width > 0 && !p.countDataRow() {
		return false
	}
	p.rowProblem(row, "Malformed CSV: "+perr.Err.Error())
	return p.width > 0 // a malformed header leaves nothing to check rows against
}

// advance numbers the record on input lines start to end. The CSV reader
// skips empty lines silently, but a spreadsheet shows them as rows, so they
// are counted from the gap since the last record.
func (p *parser) advance(start, end int) int {
	p.row += start - p.lastLine
	p.lastLine = end
	return p.row
}

// longLineRow tells, as well as the reader's partial record allows, the row
// holding the over-long line.
func (p *parser) longLineRow(partial []string) int {
	line := p.in.longLine
	if line <= p.lastLine {
		return p.row // the reader already returned that record with a syntax error
	}
	if len(partial) > 0 {
		line, _ = p.r.FieldPos(0)
	}
	return p.row + line - p.lastLine
}

// countDataRow counts one more data row and reports whether it is within
// MaxRows.
func (p *parser) countDataRow() bool {
	p.out.DataRows++
	if p.out.DataRows > MaxRows {
		p.out.TooManyRows = true
		return false
	}
	return true
}

// finish reports what is missing once the input has ended.
func (p *parser) finish() {
	switch {
	case p.width == 0:
		p.problem(msgEmpty)
	case p.out.DataRows == 0:
		p.problem(msgNoDataRows)
	}
}

// rowProblem records a problem of one row.
func (p *parser) rowProblem(row int, msg string) {
	p.problem("Row " + strconv.Itoa(row) + ": " + msg)
}

// problem counts a problem and keeps its message while there is room.
func (p *parser) problem(msg string) {
	p.out.ProblemCount++
	if len(p.out.Problems) < maxRowMessages {
		p.out.Problems = append(p.out.Problems, msg)
	}
}

// result returns the verdict, with the records only for a valid file.
func (p *parser) result() Parsed {
	if p.out.Valid() {
		p.out.Records = p.records
	}
	return p.out
}
