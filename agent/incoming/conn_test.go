package incoming

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/agent/incoming/http1"
)

func TestDetectDoesNotWaitForMore(t *testing.T) {
	for _, c := range []struct {
		send string
		want http1.Kind
	}{
		{"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", http1.HTTP1},
		{http1.Preface, http1.HTTP2Preface},
		{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", http1.Other}, // a TLS hello
	} {
		a, b := net.Pipe()
		go a.Write([]byte(c.send))
		start := time.Now()
		got := detect(b, bufio.NewReader(b))
		if took := time.Since(start); got != c.want || took > detectTimeout/2 {
			t.Errorf("%q: %v after %v, want %v at once", c.send, got, took, c.want)
		}
		a.Close()
		b.Close()
	}
}
