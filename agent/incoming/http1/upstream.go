package http1

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// Upstream is where requests go: the original server, or a session's
// local process for the requests its filter matched.
type Upstream interface {
	Dial(ctx context.Context) (net.Conn, error)
}

// upstreamConn is one connection to an upstream with its reader, which
// outlives a response on the persistent connection to the original server.
type upstreamConn struct {
	conn   net.Conn
	br     *bufio.Reader
	reused bool
	// watch is set while the connection is idle: a goroutine peeks it, so
	// that a server closing it (or sending bytes nobody asked for) is seen
	// before a request is written into a dead connection.
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

// idle starts watching a connection kept for the next request.
func (u *upstreamConn) idle() {
	ch := make(chan error, 1)
	u.watch = ch
	go func() {
		_, err := u.br.Peek(1)
		ch <- err
	}()
}

// wake stops the watch and reports whether the connection can carry the
// next request: only if the watch was still waiting when woken.
func (u *upstreamConn) wake() bool {
	if u.watch == nil {
		return true
	}
	u.conn.SetReadDeadline(time.Unix(1, 0))
	err := <-u.watch
	u.watch = nil
	u.conn.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}

func (u *upstreamConn) close() {
	u.conn.Close()
	if u.watch != nil {
		<-u.watch
		u.watch = nil
	}
}

// isTimeout reports a deadline that passed on a connection.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
