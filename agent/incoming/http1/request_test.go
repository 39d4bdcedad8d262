package http1

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func readString(s string, lim Limits) (*Request, error) {
	return ReadRequest(bufio.NewReader(strings.NewReader(s)), lim)
}

func TestReadRequest(t *testing.T) {
	const head = "POST http://svc.ns:8080?x=1 HTTP/1.1\r\nhOsT: svc\r\nx-Odd_Case:  spaced\tvalue \r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n"
	br := bufio.NewReader(strings.NewReader("\r\n\r\n" + head + "hello" + "GET / HTTP/1.0\r\n\r\n"))
	r, err := ReadRequest(br, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := &Request{
		Raw:    []byte(head),
		Method: "POST", Target: "http://svc.ns:8080?x=1", Proto: "HTTP/1.1",
		Path: "/", RawQuery: "x=1",
		Header:  [][2]string{{"hOsT", "svc"}, {"x-Odd_Case", "spaced\tvalue"}, {"Content-Length", "5, 5"}, {"content-length", "5"}},
		Framing: ContentLength, ContentLength: 5,
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got  %+v\nwant %+v", r, want)
	}
	if n, err := CopyBody(io.Discard, br, r.Framing, r.ContentLength, Limits{}); n != 5 || err != nil {
		t.Fatalf("body: %d, %v", n, err)
	}
	r, err = ReadRequest(br, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Close || r.Framing != NoBody || r.Path != "/" {
		t.Fatalf("HTTP/1.0 request: %+v", r)
	}
	if _, err := ReadRequest(br, Limits{}); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

func TestRequestSemantics(t *testing.T) {
	for _, tc := range []struct {
		name  string
		head  string
		check func(*Request) bool
	}{
		{"chunked", "POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n", func(r *Request) bool { return r.Framing == Chunked }},
		{"length zero", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 000\r\n\r\n", func(r *Request) bool { return r.Framing == NoBody }},
		{"keep-alive 1.0", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", func(r *Request) bool { return !r.Close }},
		{"close 1.1", "GET / HTTP/1.1\r\nHost: h\r\nConnection: te, close\r\n\r\n", func(r *Request) bool { return r.Close }},
		{"upgrade", "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", func(r *Request) bool { return r.Upgrade && !r.Close }},
		{"upgrade without connection", "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", func(r *Request) bool { return !r.Upgrade }},
		{"upgrade 1.0 ignored", "GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", func(r *Request) bool { return !r.Upgrade }},
		{"expect", "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", func(r *Request) bool { return r.Expect100 }},
		{"query", "GET /a/b?c=d?e HTTP/1.1\r\nHost: h\r\n\r\n", func(r *Request) bool { return r.Path == "/a/b" && r.RawQuery == "c=d?e" }},
		{"absolute path", "GET https://h:1/p/q?r HTTP/1.1\r\nHost: h\r\n\r\n", func(r *Request) bool { return r.Path == "/p/q" && r.RawQuery == "r" }},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", func(r *Request) bool { return r.Path == "*" }},
		{"connect", "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n", func(r *Request) bool { return r.Path == "" && r.Target == "db:5432" }},
		{"utf-8 target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", func(r *Request) bool { return r.Path == "/caf\xc3\xa9" }},
		{"obs-text value", "GET / HTTP/1.1\r\nHost: h\r\nX: \xff\r\n\r\n", func(r *Request) bool { return r.Header[1][1] == "\xff" }},
		{"empty value", "GET / HTTP/1.1\r\nHost: h\r\nX:\r\n\r\n", func(r *Request) bool { return r.Header[1][1] == "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := readString(tc.head, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(r) {
				t.Fatalf("%+v", r)
			}
		})
	}
}

// TestReadRequestRefusals: each refusal and its status.
func TestReadRequestRefusals(t *testing.T) {
	const host = "Host: h\r\n"
	for _, tc := range []struct {
		name   string
		head   string
		status int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE and CL", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
		{"CL differ", "POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
		{"CL list differ", "POST / HTTP/1.1\r\n" + host + "Content-Length: 3, 4\r\n\r\n", 400},
		{"CL sign", "POST / HTTP/1.1\r\n" + host + "Content-Length: +3\r\n\r\n", 400},
		{"CL hex", "POST / HTTP/1.1\r\n" + host + "Content-Length: 0x3\r\n\r\n", 400},
		{"CL empty", "POST / HTTP/1.1\r\n" + host + "Content-Length: \r\n\r\n", 400},
		{"CL empty element", "POST / HTTP/1.1\r\n" + host + "Content-Length: 3,\r\n\r\n", 400},
		{"CL space inside", "POST / HTTP/1.1\r\n" + host + "Content-Length: 1 2\r\n\r\n", 400},
		{"CL huge", "POST / HTTP/1.1\r\n" + host + "Content-Length: 99999999999999999999\r\n\r\n", 400},
		{"TE not last", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked, identity\r\n\r\n", 400},
		{"TE not chunked", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: identity\r\n\r\n", 400},
		{"TE twice chunked", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE gzip", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"TE trailing comma", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked,\r\n\r\n", 400},
		{"TE empty", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding:\r\n\r\n", 400},
		{"TE quoted", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: \"chunked\"\r\n\r\n", 400},
		{"TE vertical tab", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\x0b\r\n\r\n", 400},
		{"TE on 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\n" + host + "X: a\r\n b\r\n\r\n", 400},
		{"space before first field", "GET / HTTP/1.1\r\n " + host + "\r\n", 400},
		{"space before colon", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding : chunked\r\n\r\n", 400},
		{"tab before colon", "GET / HTTP/1.1\r\n" + host + "X\t: a\r\n\r\n", 400},
		{"no colon", "GET / HTTP/1.1\r\n" + host + "X\r\n\r\n", 400},
		{"empty name", "GET / HTTP/1.1\r\n" + host + ": a\r\n\r\n", 400},
		{"bad name", "GET / HTTP/1.1\r\n" + host + "X(y): a\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\n" + host + "X: a\x00b\r\n\r\n", 400},
		{"bare CR in value", "GET / HTTP/1.1\r\n" + host + "X: a\rContent-Length: 5\r\n\r\n", 400},
		{"bare LF in head", "GET / HTTP/1.1\r\n" + host + "X: a\nContent-Length: 5\r\n\r\n", 400},
		{"bare LF end", "GET / HTTP/1.1\n" + host + "\n", 400},
		{"bare LF empty line", "GET / HTTP/1.1\r\n" + host + "\n", 400},
		{"two spaces", "GET  / HTTP/1.1\r\n" + host + "\r\n", 400},
		{"trailing space", "GET / HTTP/1.1 \r\n" + host + "\r\n", 400},
		{"HTTP/0.9", "GET /\r\n\r\n", 400},
		{"lower version", "GET / http/1.1\r\n" + host + "\r\n", 400},
		{"version 1.2", "GET / HTTP/1.2\r\n" + host + "\r\n", 505},
		{"version 2.0", "GET / HTTP/2.0\r\n" + host + "\r\n", 505},
		{"version 0.9", "GET / HTTP/0.9\r\n" + host + "\r\n", 505},
		{"method of 25 bytes", strings.Repeat("M", 25) + " / HTTP/1.1\r\n" + host + "\r\n", 501},
		{"bad method", "G(T / HTTP/1.1\r\n" + host + "\r\n", 400},
		{"NUL in target", "GET /a\x00b HTTP/1.1\r\n" + host + "\r\n", 400},
		{"DEL in target", "GET /a\x7f HTTP/1.1\r\n" + host + "\r\n", 400},
		{"tab in target", "GET /a\tb HTTP/1.1\r\n" + host + "\r\n", 400},
		{"relative target", "GET a/b HTTP/1.1\r\n" + host + "\r\n", 400},
		{"asterisk on GET", "GET * HTTP/1.1\r\n" + host + "\r\n", 400},
		{"CONNECT path", "CONNECT /x HTTP/1.1\r\n" + host + "\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\n" + host + "host: evil\r\n\r\n", 400},
		{"two hosts 1.0", "GET / HTTP/1.0\r\n" + host + host + "\r\n", 400},
		{"too many fields", "GET / HTTP/1.1\r\n" + host + strings.Repeat("X: y\r\n", 128) + "\r\n", 431},
		{"head too large", "GET / HTTP/1.1\r\n" + host + "X: " + strings.Repeat("y", 64<<10) + "\r\n\r\n", 431},
		{"request line too large", "GET /" + strings.Repeat("y", 64<<10) + " HTTP/1.1\r\n" + host + "\r\n", 431},
		{"too many empty lines", strings.Repeat("\r\n", 9) + "GET / HTTP/1.1\r\n" + host + "\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readString(tc.head, Limits{})
			var e *Error
			if !errors.As(err, &e) || e.Status != tc.status {
				t.Fatalf("ReadRequest = %v, want status %d", err, tc.status)
			}
		})
	}
}

func TestReadRequestLimits(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("y", 100) + "\r\n\r\n"
	if _, err := readString(head, Limits{MaxHeaderBytes: len(head)}); err != nil {
		t.Fatalf("a head of exactly the limit: %v", err)
	}
	var e *Error
	if _, err := readString(head, Limits{MaxHeaderBytes: len(head) - 1}); !errors.As(err, &e) || e.Status != 431 {
		t.Fatalf("a head one byte over the limit: %v", err)
	}
	if _, err := readString("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n", Limits{MaxHeaders: 1}); !errors.As(err, &e) || e.Status != 431 {
		t.Fatalf("two fields with MaxHeaders 1: %v", err)
	}
	for _, s := range []string{"GET / HTTP/1.1\r\nHost: h\r\n", "GET / HTT", "\r"} {
		if _, err := readString(s, Limits{}); err != io.ErrUnexpectedEOF {
			t.Fatalf("%q: %v, want io.ErrUnexpectedEOF", s, err)
		}
	}
	if _, err := readString("\r\n\r\n", Limits{}); err != io.EOF {
		t.Fatalf("empty lines then the end: %v, want io.EOF", err)
	}
}
