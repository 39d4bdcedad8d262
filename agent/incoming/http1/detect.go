package http1

import "bytes"

// Kind is what the first bytes of a connection look like.
type Kind int

// The kinds Detect tells apart.
const (
	// NeedMore: peek more bytes (or give up and treat the connection as Other).
	NeedMore Kind = iota
	// HTTP1: a request line starts; serve the connection with Serve.
	HTTP1
	// HTTP2Preface: the HTTP/2 client connection preface (h2c with prior
	// knowledge, gRPC).
	HTTP2Preface
	// Other: not HTTP; pass the connection through untouched.
	Other
)

func (k Kind) String() string {
	switch k {
	case NeedMore:
		return "need-more"
	case HTTP1:
		return "http1"
	case HTTP2Preface:
		return "http2-preface"
	}
	return "other"
}

// Preface is the HTTP/2 client connection preface (RFC 9113 §3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// maxMethod bounds the method Detect waits for: the longest registered
// methods are 17 bytes ("UPDATEREDIRECTREF").
const maxMethod = 24

// Detect classifies the first bytes a client sent. A method token
// followed by a space is taken for HTTP/1; ReadRequest then decides
// whether it really is. Empty lines before the request line are skipped,
// as ReadRequest does.
func Detect(peek []byte) Kind {
	for len(peek) >= 2 && peek[0] == '\r' && peek[1] == '\n' {
		peek = peek[2:]
	}
	if len(peek) == 0 || (len(peek) == 1 && peek[0] == '\r') {
		return NeedMore
	}
	if bytes.HasPrefix(peek, []byte(Preface)) {
		return HTTP2Preface
	}
	if bytes.HasPrefix([]byte(Preface), peek) {
		return NeedMore
	}
	for i, c := range peek {
		switch {
		case c == ' ' && i > 0:
			return HTTP1
		case !isTchar(c) || i == maxMethod:
			return Other
		}
	}
	return NeedMore
}
