package http1

import "testing"

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		peek string
		want Kind
	}{
		{"", NeedMore},
		{"G", NeedMore},
		{"GET", NeedMore},
		{"GET ", HTTP1},
		{"M-SEARCH * HTTP/1.1", HTTP1},
		{"\r\nPOST /", HTTP1},
		{"\r", NeedMore},
		{"PRI", NeedMore},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n", NeedMore},
		{Preface, HTTP2Preface},
		{Preface + "\x00\x00\x12\x04", HTTP2Preface},
		{"PRI * HTTP/1.1\r\n", HTTP1},
		{"\x16\x03\x01\x02\x00\x01", Other},
		{"SSH-2.0-OpenSSH_9.6\r\n", Other},
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
