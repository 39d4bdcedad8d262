package http1

import (
	"strings"
	"testing"
)

func TestDetect(t *testing.T) {
	longTarget := "GET /" + strings.Repeat("a", MaxPeek)
	for _, tc := range []struct {
		peek string
		want Kind
	}{
		{"", NeedMore},
		{"G", NeedMore},
		{"GET", NeedMore},
		{"GET ", NeedMore},
		{"GET / HTTP/1.", NeedMore},
		{"GET / HTTP/1.1\r", NeedMore},
		{"GET / HTTP/1.1\r\n", HTTP1},
		{"GET / HTTP/1.9\r\nHost", HTTP1}, // ReadRequest answers 505
		{"M-SEARCH * HTTP/1.1", NeedMore},
		{"M-SEARCH * HTTP/1.1\r\n", HTTP1},
		{"\r\nPOST / HTTP/1.0\r\n", HTTP1},
		{"\r", NeedMore},
		{strings.Repeat("\r\n", maxEmptyLines+1) + "GET / HTTP/1.1\r\n", Other},
		{"PRI", NeedMore},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n", NeedMore},
		{Preface, HTTP2Preface},
		{Preface + "\x00\x00\x12\x04", HTTP2Preface},
		{"PRI * HTTP/1.1\r\n", HTTP1},
		{"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", Other},
		{"GET / HTTP/2.0\r\n", Other},
		{"GET / HTTP/1.1\n", Other}, // ReadRequest refuses a bare LF
		{"GET /\r\n", Other},        // HTTP/0.9
		{"GET  / HTTP/1.1\r\n", Other},
		{"GET /a\x01 HTTP/1.1\r\n", Other},
		{longTarget[:MaxPeek-1], NeedMore},
		{longTarget, HTTP1}, // ReadRequest serves it, or answers 431
		{"\x16\x03\x01\x02\x00\x01", Other},
		{"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3\r\n", Other},
		{"SSH-2.0-OpenSSH_9.6\r\n", Other},
		{"get foo\r\n", Other},
		{"SET a b\r\n", Other},
		{"NICK x\r\n", Other},
		{"USER guest 0 * :Real Name\r\n", Other},
		{"PING\r\n", Other},
		{" GET /", Other},
		{"ABCDEFGHIJKLMNOPQRSTUVWXYZ", Other},
		{"\x00\x00\x00\x08\x04\xd2\x16\x2f", Other},
	} {
		if got := Detect([]byte(tc.peek)); got != tc.want {
			t.Errorf("Detect(%q) = %v, want %v", tc.peek, got, tc.want)
		}
	}
}
