package http1

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// Upstream is where requests go: the original server, or a session's
// local process for the requests its filter matched.
type Upstream interface {
	Dial(ctx context.Context) (net.Conn, error)
}

// ErrUseOriginal, returned (wrapped) by a routed Upstream's Dial, says the
// upstream can't take requests any more (its session ended or is away):
// the request goes to the original server instead of getting a 502.
var ErrUseOriginal = errors.New("http1: upstream gone: use the original server")

// upstreamConn is one connection to an upstream with its reader, which
// outlives a response on the persistent connection to the original server.
type upstreamConn struct {
	conn   net.Conn
	br     *bufio.Reader
	reused bool
	// watch is set while the connection is idle and can't be peeked
	// without blocking (not a socket): a goroutine peeks it, so that a
	// server closing it (or sending bytes nobody asked for) is seen before
	// a request is written into a dead connection.
	watch chan error
}

func dialUpstream(ctx context.Context, up Upstream, timeout time.Duration) (*upstreamConn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := up.Dial(ctx)
	if err != nil {
		return nil, err
	}
	return &upstreamConn{conn: conn, br: bufio.NewReader(conn)}, nil
}

// idle marks a connection kept for the next request. A socket is checked
// when it is woken, with a non-blocking peek: no goroutine and no
// deadline per request (they cost the original server's other clients a
// third of their throughput under a filtered steal). Anything else is
// watched by a goroutine.
func (u *upstreamConn) idle() {
	if _, ok := u.conn.(syscall.Conn); ok {
		return
	}
	ch := make(chan error, 1)
	u.watch = ch
	go func() {
		_, err := u.br.Peek(1)
		ch <- err
	}()
}

// wake reports whether the kept connection can carry the next request:
// nothing arrived on it while idle (no EOF, no bytes nobody asked for).
func (u *upstreamConn) wake() bool {
	if u.watch == nil {
		if u.br.Buffered() > 0 {
			return false
		}
		if sc, ok := u.conn.(syscall.Conn); ok {
			return quiet(sc)
		}
		return true
	}
	u.conn.SetReadDeadline(time.Unix(1, 0))
	err := <-u.watch
	u.watch = nil
	u.conn.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// quiet peeks a socket without blocking: true when nothing is there to
// read yet (EAGAIN), false at EOF, on an error, or with unasked-for bytes.
func quiet(sc syscall.Conn) bool {
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	var b [1]byte
	raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait
	})
	return ok
}

func (u *upstreamConn) close() {
	u.conn.Close()
	if u.watch != nil {
		<-u.watch
		u.watch = nil
	}
}
