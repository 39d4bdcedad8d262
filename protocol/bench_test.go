package protocol

import (
	"context"
	"io"
	"net"
	"testing"
)

// The benchmarks run helper and agent in one process over loopback TCP,
// so they measure the protocol's own cost (yamux, framing, the agent's
// dispatch), not a port-forward's.

func benchClient(b *testing.B) (*testAgent, *Client) {
	a := startAgent(b, func(s *Server) { s.Logger = nil })
	c, err := a.dial(b, a.hello("bench"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return a, c
}

// BenchmarkPing is one control-stream round trip.
func BenchmarkPing(b *testing.B) {
	_, c := benchClient(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := c.Ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDialTCP is what every redirected connect costs on top of the
// pod-side dial: a new stream, the header, the reply, and the close.
func BenchmarkDialTCP(b *testing.B) {
	addr := echoServer(b, func(c net.Conn) { io.Copy(io.Discard, c) })
	_, c := benchClient(b)
	ctx := context.Background()
	for b.Loop() {
		conn, err := c.DialTCP(ctx, addr)
		if err != nil {
			b.Fatal(err)
		}
		conn.(*Conn).CloseWrite()
		io.Copy(io.Discard, conn)
		conn.Close()
	}
}

// BenchmarkDownload is bulk throughput from the pod to the helper on one
// stream (b.SetBytes: MB/s is the figure).
func BenchmarkDownload(b *testing.B) {
	const chunk = 1 << 20
	block := make([]byte, 64<<10)
	addr := echoServer(b, func(c net.Conn) {
		for {
			if _, err := c.Write(block); err != nil {
				return
			}
		}
	})
	_, c := benchClient(b)
	conn, err := c.DialTCP(context.Background(), addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	for b.Loop() {
		if _, err := io.ReadFull(conn, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpload is bulk throughput from the helper to the pod.
func BenchmarkUpload(b *testing.B) {
	const chunk = 1 << 20
	addr := echoServer(b, func(c net.Conn) { io.Copy(io.Discard, c) })
	_, c := benchClient(b)
	conn, err := c.DialTCP(context.Background(), addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	for b.Loop() {
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}
