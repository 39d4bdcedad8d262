package http1

import (
	"bufio"
	"errors"
)

// Response is one response head as received.
type Response struct {
	// Raw is the head exactly as received, status line to blank line.
	Raw []byte
	// Proto is "HTTP/1.1" or "HTTP/1.0".
	Proto string
	// Status is the status code, Reason the reason phrase (maybe empty).
	Status int
	Reason string
	// Header holds the fields in order, {name, value}.
	Header [][2]string
	// Framing and ContentLength say where the body ends.
	Framing       Framing
	ContentLength int64
	// Close: the connection ends after this response (Connection: close,
	// HTTP/1.0 without keep-alive, or a body that runs until close).
	Close bool
	// Tunnel: HTTP ends with this response and the connection carries
	// raw bytes both ways (101 to an upgrade, 2xx to CONNECT).
	Tunnel bool
}

// Interim reports whether a final response follows this one: a 1xx other
// than 101.
func (r *Response) Interim() bool {
	return r.Status >= 100 && r.Status < 200 && r.Status != 101
}

// ReadResponse reads the head of the response to req from br; the body is
// left in br for CopyBody. Framing follows RFC 9112 §6.3: responses to
// HEAD, 1xx, 204 and 304 have no body whatever their fields say; a 101 to
// an upgrade request and a 2xx to CONNECT start a tunnel; otherwise a
// final chunked coding, then Content-Length, frames the body, and without
// either the body runs until the server closes.
//
// Refused, as a *Error with status 502: what ReadRequest refuses in a
// head, a malformed status line, a version other than 1.0 and 1.1, a 101
// the request did not ask for, Transfer-Encoding with Content-Length (a
// proxy must then drop Content-Length, which a byte-for-byte copy cannot),
// and Transfer-Encoding in an HTTP/1.0 response.
//
// io.EOF means the stream ended before the response's first byte.
func ReadResponse(br *bufio.Reader, req *Request, lim Limits) (*Response, error) {
	lim = lim.withDefaults()
	raw, err := readLine(br, nil, lim.MaxHeaderBytes)
	if err != nil {
		if errors.Is(err, errLineTooLong) {
			return nil, errorf(statusBadGateway, "response status line longer than %d bytes", lim.MaxHeaderBytes)
		}
		return nil, asResponseError(err)
	}
	lineEnd := len(raw) - 2
	raw, fields, err := fieldLines(br, raw, lim.MaxHeaderBytes, lim.MaxHeaders, statusBadGateway)
	if err != nil {
		return nil, asResponseError(err)
	}
	r, err := parseResponse(raw, lineEnd, fields, req)
	return r, asResponseError(err)
}

func parseResponse(raw []byte, lineEnd int, fields []field, req *Request) (*Response, error) {
	// status-line = HTTP-version SP 3DIGIT SP [reason-phrase]; the second
	// SP is often left out with the reason, which is harmless.
	line := raw[:lineEnd]
	if len(line) < 12 || line[8] != ' ' || !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) ||
		(len(line) > 12 && line[12] != ' ') || line[9] == '0' {
		return nil, errorf(statusBadGateway, "malformed status line %q", line)
	}
	if err := checkProto(line[:8]); err != nil {
		return nil, err
	}
	reason := []byte{}
	if len(line) > 12 {
		reason = line[13:]
	}
	for _, c := range reason {
		if !isFieldChar(c) {
			return nil, errorf(statusBadGateway, "control character in reason phrase")
		}
	}
	r := &Response{
		Raw:    raw,
		Proto:  string(line[:8]),
		Status: int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0'),
		Reason: string(reason),
	}
	for _, f := range fields {
		r.Header = append(r.Header, [2]string{string(f.name), string(f.value)})
	}
	s, err := readSemantics(fields)
	if err != nil {
		return nil, err
	}
	http10 := r.Proto == "HTTP/1.0"
	r.Close = s.close || (http10 && !s.keepAlive)
	switch {
	case r.Status == 101:
		if !req.Upgrade {
			return nil, errorf(statusBadGateway, "101 to a request that did not ask to upgrade")
		}
		r.Tunnel = true
		return r, nil
	case req.Method == "CONNECT" && r.Status/100 == 2:
		r.Tunnel = true
		return r, nil
	case req.Method == "HEAD" || r.Status/100 == 1 || r.Status == 204 || r.Status == 304:
		return r, nil
	}
	if len(s.codings) > 0 {
		if http10 {
			return nil, errorf(statusBadGateway, "Transfer-Encoding in an HTTP/1.0 response")
		}
		if s.hasLength {
			return nil, errorf(statusBadGateway, "both Content-Length and Transfer-Encoding")
		}
		last, err := s.chunked()
		if err != nil {
			return nil, err
		}
		if last {
			r.Framing = Chunked
		} else {
			r.Framing, r.Close = UntilClose, true
		}
		return r, nil
	}
	if s.hasLength {
		r.Framing, r.ContentLength = ContentLength, s.length
		if s.length == 0 {
			r.Framing = NoBody
		}
		return r, nil
	}
	r.Framing, r.Close = UntilClose, true
	return r, nil
}
