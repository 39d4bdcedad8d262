package http1

import (
	"bufio"
	"errors"
	"io"
)

// Framing is how a message body is delimited (RFC 9112 §6.3).
type Framing int

// The framings.
const (
	// NoBody: the message ends with its head.
	NoBody Framing = iota
	// ContentLength: the body is ContentLength bytes.
	ContentLength
	// Chunked: the body is chunked, trailers included.
	Chunked
	// UntilClose: the body runs to the end of the connection (responses only).
	UntilClose
)

func (f Framing) String() string {
	switch f {
	case NoBody:
		return "none"
	case ContentLength:
		return "content-length"
	case Chunked:
		return "chunked"
	case UntilClose:
		return "until-close"
	}
	return "unknown"
}

// CopyBody copies one message body from src to dst byte for byte and
// returns the number of bytes written. A body that ends early is an
// io.ErrUnexpectedEOF; chunked framing errors are *Error (400).
func CopyBody(dst io.Writer, src *bufio.Reader, framing Framing, length int64, lim Limits) (int64, error) {
	switch framing {
	case ContentLength:
		n, err := io.CopyN(dst, src, length)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	case Chunked:
		return CopyChunked(dst, src, lim)
	case UntilClose:
		return io.Copy(dst, src)
	}
	return 0, nil
}
