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

// MaxPeek bounds what Detect needs to see (bufio's default size, so that a
// default Reader can peek it). A request line still unfinished at this
// length but well-formed so far (a method, a space, a target) is taken for
// HTTP/1, as a long URL: ReadRequest then serves it, or refuses it with 431
// past Limits.MaxHeaderBytes.
const MaxPeek = 4096

// Detect classifies the first bytes a client sent. HTTP/1 is a complete
// request line as ReadRequest accepts it: method SP target SP
// "HTTP/1." DIGIT CRLF, after at most as many empty lines as ReadRequest
// skips. Less is not enough: memcached ("get k"), Redis ("SET a b"), SSH
// banners and IRC send lines of words too, and must pass through rather
// than get a 400.
func Detect(peek []byte) Kind {
	full := len(peek) >= MaxPeek
	for range maxEmptyLines {
		if len(peek) < 2 || peek[0] != '\r' || peek[1] != '\n' {
			break
		}
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
	k := requestLine(peek)
	if k == NeedMore && full {
		return HTTP1 // a long target (the method is bounded far below MaxPeek)
	}
	return k
}

// requestLine tells whether b starts with a request line (HTTP1), may
// still (NeedMore), or can't (Other).
func requestLine(b []byte) Kind {
	i := 0
	for i < len(b) && isTchar(b[i]) {
		i++
	}
	switch {
	case i > maxMethod:
		return Other
	case i == len(b):
		return NeedMore
	case i == 0 || b[i] != ' ':
		return Other
	}
	i++
	start := i
	// The bytes ReadRequest allows in a target: no controls, spaces or DEL.
	for i < len(b) && b[i] > ' ' && b[i] != 0x7f {
		i++
	}
	switch {
	case i == len(b):
		return NeedMore
	case i == start || b[i] != ' ':
		return Other
	}
	const version = "HTTP/1.#\r\n" // # a digit
	rest := b[i+1:]
	for j := 0; j < len(version); j++ {
		switch {
		case j == len(rest):
			return NeedMore
		case version[j] == '#' && !isDigit(rest[j]), version[j] != '#' && rest[j] != version[j]:
			return Other
		}
	}
	return HTTP1
}
