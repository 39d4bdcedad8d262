package incoming

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/agent/incoming/http1"
	"github.com/doppel-dev/doppel/internal/testnet"
	"github.com/doppel-dev/doppel/protocol"
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

// stalledSession is a mirroring session whose local process never reads.
type stalledSession struct {
	aborted chan string
}

func (s *stalledSession) SessionID() string { return "stalled" }
func (s *stalledSession) Describe() string  { return "stalled" }
func (s *stalledSession) OpenIncoming(context.Context, protocol.IncomingHeader) (net.Conn, error) {
	a, _ := net.Pipe() // nobody reads the other end
	return &abortConn{Conn: a, aborted: s.aborted}, nil
}

type abortConn struct {
	net.Conn
	aborted chan string
}

func (c *abortConn) Abort(reason string) error {
	c.aborted <- reason
	return c.Close()
}

// TestMirrorNeverSlowsThePod: a client sends 16 MiB through a mirrored
// port whose mirror never reads; the pod's server gets it all at full
// speed and the mirror is dropped with its reason.
func TestMirrorNeverSlowsThePod(t *testing.T) {
	defer func(d time.Duration) { mirrorDrain = d }(mirrorDrain)
	mirrorDrain = 200 * time.Millisecond
	dst := netip.MustParseAddrPort(testnet.Serve(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d", n)
	}))
	stalled := &stalledSession{aborted: make(chan string, 1)}
	tb := newTable()
	tb.add(dst.Port(), &sub{sess: stalled, mode: protocol.ModeMirror}, false)
	r := &router{table: tb, log: slog.New(slog.DiscardHandler),
		dialOriginal: func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", dst.String())
		}}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	client, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	served, err := front.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go r.serve(context.Background(), served, dst)

	const size = 16 << 20
	start := time.Now()
	go func() {
		client.Write(make([]byte, size))
		client.(*net.TCPConn).CloseWrite()
	}()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, err := io.ReadAll(client)
	if string(reply) != fmt.Sprintf("got %d", size) {
		t.Fatalf("the pod's server answered %q (%v)", reply, err)
	}
	t.Logf("16 MiB through a mirrored port with a stalled mirror in %v", time.Since(start).Round(time.Millisecond))
	select {
	case reason := <-stalled.aborted:
		if reason != protocol.ReasonMirrorOverflow {
			t.Errorf("mirror aborted with %q", reason)
		}
	case <-time.After(5 * time.Second):
		t.Error("the stalled mirror was not dropped")
	}
}
