package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"golang.org/x/net/http/httpguts"
)

// errLineTooLong is what readLine returns past its budget; callers turn it
// into the status that fits (431 for a request head, 400 for a chunk line).
var errLineTooLong = errors.New("line too long")

// readLine appends one line, CRLF included, to buf and returns buf. It
// reads no more than max bytes for the line. A line ended by a bare LF is
// refused: a server that accepts LF alone and one that does not would
// split the same bytes into different messages. io.EOF means the stream
// ended before the line's first byte, io.ErrUnexpectedEOF within it.
func readLine(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	start := len(buf)
	for {
		piece, err := br.ReadSlice('\n')
		if len(buf)-start+len(piece) > max {
			return buf, errLineTooLong
		}
		buf = append(buf, piece...)
		switch {
		case err == nil:
			line := buf[start:]
			if len(line) < 2 || line[len(line)-2] != '\r' {
				return buf, errorf(statusBadRequest, "line ended by a bare LF")
			}
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(buf) == start {
				return buf, io.EOF
			}
			return buf, io.ErrUnexpectedEOF
		default:
			return buf, err
		}
	}
}

// field is one parsed field line: name and value as slices of the line,
// the value without its surrounding whitespace.
type field struct {
	name, value []byte
}

// parseField checks one field line (without its CRLF) against RFC 9112
// §5: a token name directly followed by ":", then a value of visible
// characters, spaces, tabs and obs-text. Folded lines (obs-fold) and
// whitespace before the colon are refused, as RFC 9112 lets a server do
// and as a byte-for-byte proxy must: it cannot unfold or trim what it
// forwards.
func parseField(line []byte) (field, error) {
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		return field{}, errorf(statusBadRequest, "obsolete line folding")
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return field{}, errorf(statusBadRequest, "field line without a colon")
	}
	name := line[:colon]
	if len(name) == 0 {
		return field{}, errorf(statusBadRequest, "field line with an empty name")
	}
	if last := name[len(name)-1]; last == ' ' || last == '\t' {
		return field{}, errorf(statusBadRequest, "whitespace between field name and colon")
	}
	if !isToken(name) {
		return field{}, errorf(statusBadRequest, "invalid field name %q", name)
	}
	value := trimOWS(line[colon+1:])
	for _, c := range value {
		if !isFieldChar(c) {
			return field{}, errorf(statusBadRequest, "control character %#02x in field %q", c, name)
		}
	}
	return field{name: name, value: value}, nil
}

// fieldLines reads field lines until the blank line, appending them to
// raw. It is used for heads (max bytes and count from Limits) and for
// trailer sections. The byte budget covers what is already in raw.
func fieldLines(br *bufio.Reader, raw []byte, maxBytes, maxCount int, tooLarge int) ([]byte, []field, error) {
	var fields []field
	// Lines are kept as offsets: raw may move while it grows.
	var spans [][2]int
	for {
		start := len(raw)
		var err error
		raw, err = readLine(br, raw, maxBytes-start)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				return raw, nil, errorf(tooLarge, "field section larger than %d bytes", maxBytes)
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return raw, nil, err
		}
		if len(raw)-start == 2 {
			break
		}
		if len(spans) == maxCount {
			return raw, nil, errorf(tooLarge, "more than %d field lines", maxCount)
		}
		spans = append(spans, [2]int{start, len(raw) - 2})
	}
	for _, s := range spans {
		f, err := parseField(raw[s[0]:s[1]])
		if err != nil {
			return raw, nil, err
		}
		fields = append(fields, f)
	}
	return raw, fields, nil
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// isFieldChar: field-vchar, SP or HTAB (RFC 9110 §5.5). NUL, CR, LF and
// the other controls are refused.
func isFieldChar(c byte) bool {
	return c == '\t' || c == ' ' || (c > 0x20 && c != 0x7f)
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isTchar(c) {
			return false
		}
	}
	return true
}

// isTchar reports whether c is a token character (RFC 9110 §5.6.2).
func isTchar(c byte) bool { return httpguts.IsTokenRune(rune(c)) }
