package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http/httputil"
	"reflect"
	"strings"
	"testing"
)

// fuzzLimits are small, so that inputs cross them as often as not.
var fuzzLimits = Limits{MaxHeaderBytes: 1024, MaxHeaders: 16, MaxChunkLineBytes: 64, MaxTrailerBytes: 256}

// FuzzReadRequest reads requests and their bodies from arbitrary bytes,
// as a hostile client sends them. Nothing may panic or hang; a refusal
// carries a status the agent answers with; an accepted head is exactly
// the bytes consumed for it, has CRLF line ends only, and parses the same
// when read again from its Raw bytes. Seeds: testdata/fuzz/FuzzReadRequest
// (smuggling attempts among them).
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\"\r\nhello\r\n0\r\nT: x\r\n\r\nGET / HTTP/1.0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		kind := Detect(data)
		src := bytes.NewReader(data)
		br := bufio.NewReader(src)
		consumed := func() int { return len(data) - src.Len() - br.Buffered() }
		for i := range 8 {
			req, err := ReadRequest(br, fuzzLimits)
			if err != nil {
				checkRefusal(t, err, 400, 431, 501, 505)
				return
			}
			// Detection must not let a request the parser takes pass
			// through unfiltered (leading empty lines aside).
			if i == 0 && kind != HTTP1 && len(data) > 0 && data[0] != '\r' && data[0] != '\n' {
				t.Fatalf("Detect says %v for an accepted request %q", kind, req.Raw)
			}
			checkRequest(t, req)
			if !bytes.HasSuffix(data[:consumed()], req.Raw) {
				t.Fatalf("Raw %q is not what was consumed: %q", req.Raw, data[:consumed()])
			}
			again, err := ReadRequest(bufio.NewReader(bytes.NewReader(req.Raw)), fuzzLimits)
			if err != nil {
				t.Fatalf("Raw %q read again: %v", req.Raw, err)
			}
			if !reflect.DeepEqual(again, req) {
				t.Fatalf("Raw read again:\n%+v\nfirst:\n%+v", again, req)
			}
			before := consumed()
			var body bytes.Buffer
			_, err = CopyBody(&body, br, req.Framing, req.ContentLength, fuzzLimits)
			if !bytes.Equal(data[before:before+body.Len()], body.Bytes()) {
				t.Fatalf("body copy %q is not the input %q", body.Bytes(), data[before:])
			}
			if err != nil {
				checkRefusal(t, err, 400)
				return
			}
		}
	})
}

func checkRefusal(t *testing.T, err error, statuses ...int) {
	t.Helper()
	var e *Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
	case errors.As(err, &e):
		for _, s := range statuses {
			if e.Status == s {
				return
			}
		}
		t.Fatalf("refusal with status %d: %v", e.Status, err)
	default:
		t.Fatalf("error of type %T: %v", err, err)
	}
}

func checkRequest(t *testing.T, r *Request) {
	t.Helper()
	for i, c := range r.Raw {
		if (c == '\n') != (i > 0 && r.Raw[i-1] == '\r') || (c == '\r' && (i+1 == len(r.Raw) || r.Raw[i+1] != '\n')) {
			t.Fatalf("bare CR or LF at %d in %q", i, r.Raw)
		}
	}
	if !bytes.HasSuffix(r.Raw, []byte("\r\n\r\n")) || len(r.Raw) > fuzzLimits.MaxHeaderBytes {
		t.Fatalf("Raw %q", r.Raw)
	}
	if !isToken([]byte(r.Method)) || (r.Proto != "HTTP/1.1" && r.Proto != "HTTP/1.0") || len(r.Header) > fuzzLimits.MaxHeaders {
		t.Fatalf("request %+v", r)
	}
	var lengths, codings int
	for _, h := range r.Header {
		if !isToken([]byte(h[0])) || strings.ContainsAny(h[1], "\r\n\x00") {
			t.Fatalf("field %q", h)
		}
		switch strings.ToLower(h[0]) {
		case "content-length":
			lengths++
		case "transfer-encoding":
			codings++
		}
	}
	if lengths > 0 && codings > 0 {
		t.Fatalf("both Content-Length and Transfer-Encoding accepted: %q", r.Raw)
	}
	if (r.Framing == Chunked) != (codings > 0) || r.Framing == UntilClose || r.ContentLength < 0 {
		t.Fatalf("framing %v (%d) for %q", r.Framing, r.ContentLength, r.Raw)
	}
}

// FuzzChunked copies arbitrary bytes as a chunked body. Nothing may panic
// or hang; what is written is always a prefix of the input, so an upstream
// never gets bytes the agent did not check; an accepted body is exactly the
// bytes consumed, copies again unchanged, and Go's own chunked reader
// accepts it too (the agent is never the more lenient reader). Seeds:
// testdata/fuzz/FuzzChunked.
func FuzzChunked(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("3;a=b;c=\"d\\\"e\"\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\nGET / HTTP/1.1\r\n"))
	f.Add([]byte("5\r\nhello\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bytes.NewReader(data)
		br := bufio.NewReader(src)
		var out bytes.Buffer
		n, err := CopyChunked(&out, br, fuzzLimits)
		if n != int64(out.Len()) || !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatalf("wrote %q (%d), not a prefix of %q", out.Bytes(), n, data)
		}
		if err != nil {
			checkRefusal(t, err, 400)
			return
		}
		if consumed := len(data) - src.Len() - br.Buffered(); consumed != out.Len() {
			t.Fatalf("consumed %d bytes, wrote %d", consumed, out.Len())
		}
		var again bytes.Buffer
		if _, err := CopyChunked(&again, bufio.NewReader(bytes.NewReader(out.Bytes())), fuzzLimits); err != nil || !bytes.Equal(again.Bytes(), out.Bytes()) {
			t.Fatalf("copying %q again: %q, %v", out.Bytes(), again.Bytes(), err)
		}
		if _, err := io.Copy(io.Discard, httputil.NewChunkedReader(bytes.NewReader(out.Bytes()))); err != nil && !strings.Contains(err.Error(), "too much non-data") {
			t.Fatalf("Go's chunked reader refuses %q: %v", out.Bytes(), err)
		}
	})
}
