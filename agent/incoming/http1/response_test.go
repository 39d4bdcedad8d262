package http1

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	get := &Request{Method: "GET", Proto: "HTTP/1.1"}
	head := &Request{Method: "HEAD", Proto: "HTTP/1.1"}
	upgrade := &Request{Method: "GET", Proto: "HTTP/1.1", Upgrade: true}
	connect := &Request{Method: "CONNECT", Proto: "HTTP/1.1"}
	for _, tc := range []struct {
		name    string
		req     *Request
		head    string
		framing Framing
		length  int64
		close   bool
		tunnel  bool
		interim bool
	}{
		{"length", get, "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", ContentLength, 12, false, false, false},
		{"chunked", get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Chunked, 0, false, false, false},
		{"until close", get, "HTTP/1.1 200 OK\r\n\r\n", UntilClose, 0, true, false, false},
		{"TE not chunked", get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", UntilClose, 0, true, false, false},
		{"HEAD", head, "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", NoBody, 0, false, false, false},
		{"HEAD chunked", head, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", NoBody, 0, false, false, false},
		{"204", get, "HTTP/1.1 204 No Content\r\nContent-Length: 12\r\n\r\n", NoBody, 0, false, false, false},
		{"304", get, "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", NoBody, 0, false, false, false},
		{"100", get, "HTTP/1.1 100 Continue\r\n\r\n", NoBody, 0, false, false, true},
		{"103", get, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", NoBody, 0, false, false, true},
		{"101", upgrade, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", NoBody, 0, false, true, false},
		{"CONNECT 200", connect, "HTTP/1.1 200 Connection established\r\n\r\n", NoBody, 0, false, true, false},
		{"CONNECT 407", connect, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", NoBody, 0, false, false, false},
		{"1.0", get, "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", ContentLength, 1, true, false, false},
		{"1.0 keep-alive", get, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", ContentLength, 1, false, false, false},
		{"close", get, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", ContentLength, 1, true, false, false},
		{"no reason", get, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", NoBody, 0, false, false, false},
		{"empty reason", get, "HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n", NoBody, 0, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ReadResponse(bufio.NewReader(strings.NewReader(tc.head)), tc.req, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Raw) != tc.head || r.Framing != tc.framing || r.ContentLength != tc.length ||
				r.Close != tc.close || r.Tunnel != tc.tunnel || r.Interim() != tc.interim {
				t.Fatalf("%+v", r)
			}
		})
	}
}

func TestReadResponseRefusals(t *testing.T) {
	get := &Request{Method: "GET", Proto: "HTTP/1.1"}
	for _, tc := range []struct{ name, head string }{
		{"CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"CL differ", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"},
		{"TE on 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"},
		{"unasked 101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
		{"version", "HTTP/2.0 200 OK\r\n\r\n"},
		{"status", "HTTP/1.1 20 OK\r\n\r\n"},
		{"status 0xx", "HTTP/1.1 099 OK\r\n\r\n"},
		{"no space", "HTTP/1.1 200OK\r\n\r\n"},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"},
		{"control in reason", "HTTP/1.1 200 O\x01K\r\n\r\n"},
		{"too large", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadResponse(bufio.NewReader(strings.NewReader(tc.head)), get, Limits{})
			var e *Error
			if !errors.As(err, &e) || e.Status != 502 {
				t.Fatalf("ReadResponse = %v, want a 502", err)
			}
		})
	}
}
