package ingest

import (
	"bufio"
	"bytes"
	"io"
	"unicode/utf8"
)

// inputGuard sits between the upload and the CSV reader. It checks that the
// input is valid UTF-8 and stops the reader at a line longer than
// maxLineBytes, before the reader has buffered more of it. Its errors are
// sticky because the CSV reader reads on after returning a syntax error.
type inputGuard struct {
	src      *bufio.Reader
	utf8     utf8Validator
	lines    int // newlines passed on so far
	lineLen  int // bytes of the current line passed on so far
	longLine int // number of the line found too long
	err      error
}

// Read passes on the next bytes of the input, cut short at an over-long line.
func (g *inputGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.src.Read(p)
	if err != nil && err != io.EOF {
		g.err = err
		return 0, err
	}
	if _, err := g.utf8.Write(p[:n]); err != nil {
		g.err = err
		return 0, err
	}
	if k := g.scanLines(p[:n]); k >= 0 {
		g.err = errLineTooLong
		return k, g.err
	}
	return n, err
}

// scanLines follows the lines in b and returns the length of the prefix of b
// that keeps every line within maxLineBytes, or -1 when all of b does.
func (g *inputGuard) scanLines(b []byte) int {
	for off := 0; ; {
		i := bytes.IndexByte(b[off:], '\n')
		end := len(b)
		if i >= 0 {
			end = off + i
		}
		if g.lineLen+end-off > maxLineBytes {
			g.longLine = g.lines + 1
			return off + maxLineBytes - g.lineLen
		}
		if i < 0 {
			g.lineLen += end - off
			return -1
		}
		g.lines++
		g.lineLen = 0
		off = end + 1
	}
}

// drain reads the rest of the input once parsing has stopped, still checking
// that it is valid UTF-8. It first returns any failure the CSV reader hid
// behind a syntax error.
func (g *inputGuard) drain() error {
	if g.err != nil && g.err != errLineTooLong {
		return g.err
	}
	if _, err := io.Copy(&g.utf8, g.src); err != nil {
		return err
	}
	return g.utf8.finish()
}

// utf8Validator checks that the bytes written to it, in chunks that may split
// a character, are valid UTF-8.
type utf8Validator struct {
	pending  [utf8.UTFMax]byte // start of a character split between writes
	npending int
}

// Write checks the next chunk; it fails with errInvalidUTF8.
func (v *utf8Validator) Write(b []byte) (int, error) {
	n := len(b)
	for v.npending > 0 && len(b) > 0 && !utf8.FullRune(v.pending[:v.npending]) {
		v.pending[v.npending] = b[0]
		v.npending++
		b = b[1:]
	}
	if v.npending > 0 {
		if !utf8.FullRune(v.pending[:v.npending]) {
			return n, nil // b was used up and the character is still incomplete
		}
		if !utf8.Valid(v.pending[:v.npending]) {
			return 0, errInvalidUTF8
		}
		v.npending = 0
	}
	cut := len(b) - partialRuneLen(b)
	if !utf8.Valid(b[:cut]) {
		return 0, errInvalidUTF8
	}
	v.npending = copy(v.pending[:], b[cut:])
	return n, nil
}

// finish fails with errInvalidUTF8 when the input ended inside a character.
func (v *utf8Validator) finish() error {
	if v.npending > 0 {
		return errInvalidUTF8
	}
	return nil
}

// partialRuneLen returns the length of the incomplete character ending b, if
// any.
func partialRuneLen(b []byte) int {
	for i := len(b) - 1; i >= 0 && i > len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if utf8.FullRune(b[i:]) {
				return 0
			}
			return len(b) - i
		}
	}
	return 0
}
