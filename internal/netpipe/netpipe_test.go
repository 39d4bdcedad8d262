package netpipe

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// pair is a connected pair of loopback TCP sockets.
func pair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// Each side's EOF reaches the other as a half-close, and the other
// direction keeps working until it ends too.
func TestJoinHalfClose(t *testing.T) {
	client, a := pair(t)
	b, server := pair(t)
	go Join(a, struct{ *net.TCPConn }{b}) // not a *net.TCPConn: the buffered copy
	client.Write([]byte("request"))
	client.CloseWrite()
	got, err := io.ReadAll(server)
	if err != nil || string(got) != "request" {
		t.Fatalf("server read %q %v, want the request then EOF", got, err)
	}
	server.Write([]byte("answer after the client's EOF"))
	server.Close()
	got, err = io.ReadAll(client)
	if err != nil || string(got) != "answer after the client's EOF" {
		t.Fatalf("client read %q %v", got, err)
	}
}

type failingConn struct{ net.Conn }

func (failingConn) Read([]byte) (int, error) { return 0, errors.New("stream reset") }

// A failed copy ends both ends: Join returns although the client never
// closes its side, and the client sees its connection reset, not a FIN
// that would pass for the end of the bytes.
func TestJoinAbort(t *testing.T) {
	client, a := pair(t)
	defer client.Close()
	b, _ := pair(t)
	joined := make(chan struct{})
	go func() {
		Join(a, failingConn{b})
		close(joined)
	}()
	select {
	case <-joined:
	case <-time.After(5 * time.Second):
		t.Fatal("Join still waits for the other direction after a failed copy")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read: %v, want a reset", err)
	}
}
