package http1

import (
	"bufio"
	"errors"
	"io"
)

// maxChunkSize keeps chunk sizes far from int64 overflow.
const maxChunkSize = 1 << 60

// maxSizeDigits bounds the hex digits of a chunk size, leading zeros
// included, as Go's and other servers' readers do.
const maxSizeDigits = 16

// CopyChunked copies a chunked body (RFC 9112 §7.1) from src to dst as
// received: chunk-size lines with their extensions, data, the last chunk,
// trailer fields and the final CRLF. Each line is checked in full before
// it is written, so dst only ever gets a valid prefix of a chunked body
// and never bytes that another parser could end the body early on. It
// refuses (400) bare LFs, sizes that are not hex, over 2^60 or
// of more than 16 digits, whitespace
// other than around ";", malformed extensions, data not followed by CRLF,
// and trailer fields a head would be refused for; lines are bounded by
// lim.MaxChunkLineBytes and the trailer section by lim.MaxTrailerBytes.
func CopyChunked(dst io.Writer, src *bufio.Reader, lim Limits) (int64, error) {
	lim = lim.withDefaults()
	var written int64
	write := func(b []byte) error {
		n, err := dst.Write(b)
		written += int64(n)
		return err
	}
	var line []byte
	for {
		var err error
		line, err = readLine(src, line[:0], lim.MaxChunkLineBytes)
		if err != nil {
			return written, chunkReadError(err, "chunk-size line longer than %d bytes", lim.MaxChunkLineBytes)
		}
		size, err := parseChunkLine(line[:len(line)-2])
		if err != nil {
			return written, err
		}
		if err := write(line); err != nil {
			return written, err
		}
		if size == 0 {
			break
		}
		n, err := io.CopyN(dst, src, size)
		written += n
		if err != nil {
			return written, chunkReadError(err, "")
		}
		crlf, err := src.Peek(2)
		if err != nil {
			return written, chunkReadError(err, "")
		}
		if crlf[0] != '\r' || crlf[1] != '\n' {
			return written, errorf(statusBadRequest, "chunk data not followed by CRLF")
		}
		if err := write(crlf); err != nil {
			return written, err
		}
		src.Discard(2)
	}
	trailers, _, err := fieldLines(src, line[:0], lim.MaxTrailerBytes, lim.MaxTrailerBytes, statusBadRequest)
	if err != nil {
		return written, chunkReadError(err, "")
	}
	return written, write(trailers)
}

// chunkReadError names what went wrong reading a chunked body.
func chunkReadError(err error, tooLong string, args ...any) error {
	switch {
	case errors.Is(err, errLineTooLong):
		return errorf(statusBadRequest, tooLong, args...)
	case errors.Is(err, io.EOF):
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseChunkLine parses chunk-size [chunk-ext] (without CRLF):
//
//	chunk-size = 1*HEXDIG
//	chunk-ext  = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
//	ext-val    = token / quoted-string
//
// except that whitespace right after the size is refused: Go's chunked
// reader (a common original server) refuses it too, and the agent is
// never the more lenient reader of what it forwards.
func parseChunkLine(b []byte) (int64, error) {
	var size int64
	i := 0
	for ; i < len(b) && hexValue(b[i]) >= 0; i++ {
		if size > maxChunkSize>>4 || i == maxSizeDigits {
			return 0, errorf(statusBadRequest, "chunk size too large")
		}
		size = size<<4 | int64(hexValue(b[i]))
	}
	if i == 0 {
		return 0, errorf(statusBadRequest, "invalid chunk size")
	}
	if i < len(b) && b[i] != ';' {
		return 0, errorf(statusBadRequest, "invalid chunk size")
	}
	for i < len(b) {
		i = skipBWS(b, i)
		if i == len(b) || b[i] != ';' {
			return 0, errorf(statusBadRequest, "invalid chunk extension")
		}
		i = skipBWS(b, i+1)
		start := i
		for i < len(b) && isTchar(b[i]) {
			i++
		}
		if i == start {
			return 0, errorf(statusBadRequest, "chunk extension without a name")
		}
		j := skipBWS(b, i)
		if j == len(b) || b[j] != '=' {
			continue
		}
		i = skipBWS(b, j+1)
		if i < len(b) && b[i] == '"' {
			end, ok := quotedString(b, i)
			if !ok {
				return 0, errorf(statusBadRequest, "invalid quoted chunk extension value")
			}
			i = end
			continue
		}
		start = i
		for i < len(b) && isTchar(b[i]) {
			i++
		}
		if i == start {
			return 0, errorf(statusBadRequest, "chunk extension without a value")
		}
	}
	return size, nil
}

// quotedString returns the index after the quoted-string that starts at
// b[i] (a DQUOTE).
func quotedString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			i++
			if i == len(b) || !isFieldChar(b[i]) {
				return 0, false
			}
		case !isFieldChar(c):
			return 0, false
		}
	}
	return 0, false
}

func skipBWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

func hexValue(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
