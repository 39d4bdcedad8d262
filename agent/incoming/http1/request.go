package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Request is one request head as received.
type Request struct {
	// Raw is the head exactly as received, from the request line to the
	// blank line; the empty lines a client may send before a request line
	// are not part of it.
	Raw []byte
	// Method, Target (the request-target, not decoded) and Proto
	// ("HTTP/1.1" or "HTTP/1.0") are the parts of the request line.
	Method, Target, Proto string
	// Path and RawQuery split the target at its first "?". For an
	// absolute-form target the scheme and authority are left out; Path is
	// "*" for an asterisk-form and empty for an authority-form (CONNECT).
	Path, RawQuery string
	// Header holds the fields in order, {name, value}, names as received
	// and values without surrounding whitespace.
	Header [][2]string
	// Framing and ContentLength say where the body ends.
	Framing       Framing
	ContentLength int64
	// Upgrade: the request asks to switch protocols (Upgrade field and
	// Connection: upgrade, HTTP/1.1 only).
	Upgrade bool
	// Close: the client expects the connection to close after the
	// response (Connection: close, or HTTP/1.0 without keep-alive).
	Close bool
	// Expect100: "Expect: 100-continue"; the client may wait for a 100
	// before it sends the body.
	Expect100 bool
}

// maxEmptyLines bounds the empty lines skipped before a request line
// (RFC 9112 §2.2 asks servers to skip at least one).
const maxEmptyLines = 8

// ReadRequest reads one request head from br. The body, if any, is left
// in br for CopyBody.
//
// It refuses, with an *Error carrying the status to answer:
//   - a line ended by a bare LF, and a CR anywhere but before a LF (400):
//     RFC 9112 allows a lone LF, but an upstream that disagrees would see
//     other message boundaries than the agent;
//   - a request line that is not exactly method SP target SP version, a
//     method that is not a token, a target with controls, spaces or DEL,
//     a target form that does not fit the method (400); raw UTF-8 in a
//     target is allowed, as servers do;
//   - a method longer than 24 bytes (501);
//   - a version other than HTTP/1.0 and HTTP/1.1 (505; 400 if malformed);
//   - obs-fold, whitespace before a colon, invalid names, controls in
//     values (400);
//   - a head over lim.MaxHeaderBytes or with more than lim.MaxHeaders
//     field lines (431);
//   - an HTTP/1.1 request without exactly one Host, or an HTTP/1.0 one
//     with several (400): a filter and the server must see the same host;
//   - Content-Length with Transfer-Encoding, Content-Length values that
//     differ or are not digits (400);
//   - Transfer-Encoding on HTTP/1.0, or whose final coding is not chunked,
//     or with chunked twice or an empty element (400), and any coding other
//     than chunked (501): the agent can only frame chunked bodies.
//
// io.EOF means the stream ended before a request started.
func ReadRequest(br *bufio.Reader, lim Limits) (*Request, error) {
	lim = lim.withDefaults()
	if err := skipEmptyLines(br); err != nil {
		return nil, err
	}
	raw, err := readLine(br, nil, lim.MaxHeaderBytes)
	if err != nil {
		if errors.Is(err, errLineTooLong) {
			return nil, errorf(statusHeadersTooLarge, "request line longer than %d bytes", lim.MaxHeaderBytes)
		}
		return nil, err
	}
	lineEnd := len(raw) - 2
	raw, fields, err := fieldLines(br, raw, lim.MaxHeaderBytes, lim.MaxHeaders, statusHeadersTooLarge)
	if err != nil {
		return nil, err
	}
	return parseRequest(raw, lineEnd, fields)
}

// skipEmptyLines drops CRLFs before a request line; a bare LF is left for
// readLine to refuse.
func skipEmptyLines(br *bufio.Reader) error {
	for range maxEmptyLines {
		b, err := br.Peek(2)
		if len(b) > 0 && b[0] != '\r' {
			return nil
		}
		if err != nil {
			if len(b) > 0 && errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if b[1] != '\n' {
			return nil
		}
		br.Discard(2)
	}
	return nil
}

func parseRequest(raw []byte, lineEnd int, fields []field) (*Request, error) {
	line := raw[:lineEnd]
	method, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return nil, errorf(statusBadRequest, "malformed request line")
	}
	target, proto, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return nil, errorf(statusBadRequest, "malformed request line")
	}
	if !isToken(method) {
		return nil, errorf(statusBadRequest, "invalid method %q", method)
	}
	if len(method) > maxMethod {
		// Detect takes no longer method for HTTP: a connection it passed
		// through must not be one the parser would have served.
		return nil, errorf(statusNotImplemented, "method of %d bytes", len(method))
	}
	if err := checkProto(proto); err != nil {
		return nil, err
	}
	r := &Request{Raw: raw, Method: string(method), Target: string(target), Proto: string(proto)}
	if err := r.splitTarget(target); err != nil {
		return nil, err
	}
	for _, f := range fields {
		r.Header = append(r.Header, [2]string{string(f.name), string(f.value)})
	}
	s, err := readSemantics(fields)
	if err != nil {
		return nil, err
	}
	http10 := r.Proto == "HTTP/1.0"
	if s.hosts > 1 || (s.hosts == 0 && !http10) {
		return nil, errorf(statusBadRequest, "%d Host fields", s.hosts)
	}
	if len(s.codings) > 0 {
		if http10 {
			return nil, errorf(statusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
		}
		if s.hasLength {
			return nil, errorf(statusBadRequest, "both Content-Length and Transfer-Encoding")
		}
		last, err := s.chunked()
		if err != nil {
			return nil, err
		}
		if !last {
			return nil, errorf(statusBadRequest, "chunked is not the final transfer coding")
		}
		if len(s.codings) > 1 {
			return nil, errorf(statusNotImplemented, "transfer coding %q", s.codings[0])
		}
		r.Framing = Chunked
	} else if s.hasLength {
		r.Framing, r.ContentLength = ContentLength, s.length
		if s.length == 0 {
			r.Framing = NoBody
		}
	}
	r.Close = s.close || (http10 && !s.keepAlive)
	r.Upgrade = s.upgrade && !http10
	r.Expect100 = s.expect100 && !http10
	return r, nil
}

// checkProto accepts HTTP/1.0 and HTTP/1.1; another well-formed version
// is a 505 (RFC 9110 §15.6.6), anything else a 400.
func checkProto(p []byte) error {
	if len(p) != 8 || !bytes.HasPrefix(p, []byte("HTTP/")) || !isDigit(p[5]) || p[6] != '.' || !isDigit(p[7]) {
		return errorf(statusBadRequest, "malformed version %q", p)
	}
	if p[5] != '1' || (p[7] != '0' && p[7] != '1') {
		return errorf(statusVersionNotSupported, "version %s", p)
	}
	return nil
}

// splitTarget checks the request-target against the form the method
// allows (RFC 9112 §3.2) and fills Path and RawQuery.
func (r *Request) splitTarget(target []byte) error {
	if len(target) == 0 {
		return errorf(statusBadRequest, "empty request target")
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return errorf(statusBadRequest, "invalid byte %#02x in request target", c)
		}
	}
	switch {
	case r.Method == "CONNECT":
		// authority-form: host:port, nothing else.
		if bytes.ContainsAny(target, "/?#@") || !bytes.Contains(target, []byte(":")) {
			return errorf(statusBadRequest, "CONNECT target is not host:port")
		}
		return nil
	case target[0] == '/':
		r.pathQuery(target)
		return nil
	case len(target) == 1 && target[0] == '*':
		if r.Method != "OPTIONS" {
			return errorf(statusBadRequest, "asterisk target on %s", r.Method)
		}
		r.Path = "*"
		return nil
	}
	// absolute-form: scheme "://" authority [path-abempty] ["?" query].
	scheme, rest, ok := bytes.Cut(target, []byte("://"))
	if !ok || !isScheme(scheme) {
		return errorf(statusBadRequest, "invalid request target")
	}
	if i := bytes.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[i:]
	} else {
		rest = nil
	}
	if len(rest) == 0 || rest[0] == '?' {
		// An empty path stands for "/" (RFC 9112 §3.2.2).
		r.pathQuery(append([]byte("/"), rest...))
		return nil
	}
	r.pathQuery(rest)
	return nil
}

func (r *Request) pathQuery(pq []byte) {
	path, query, _ := bytes.Cut(pq, []byte("?"))
	r.Path, r.RawQuery = string(path), string(query)
}

func isScheme(b []byte) bool {
	if len(b) == 0 || !isAlpha(b[0]) {
		return false
	}
	for _, c := range b {
		if !isAlpha(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
