package http1

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/doppel-dev/doppel/internal/netpipe"
)

// bodyTimeout bounds each wait for more of a request body, as nginx's
// client_body_timeout does: a client that stalls mid-body would hold the
// copy and the upstream connection forever. A variable for tests.
var bodyTimeout = time.Minute

// requestBody is a request body being copied from the client to an
// upstream while the response is read: a client that sent Expect:
// 100-continue waits for the 100 before sending it, and a server may
// answer before it has read it all.
type requestBody struct {
	done   chan struct{}
	client net.Conn
	up     net.Conn
	// mu orders stop's wake-up deadlines after the copy's own.
	mu      sync.Mutex
	stopped bool
	// err is what ended the copy early, set before done closes.
	err error
	// clientFailed: err came from the client (a refused chunked body, a
	// connection that ended) rather than from writing to the upstream or
	// from stop.
	clientFailed bool
}

func (s *server) sendBody(req *Request, u *upstreamConn) *requestBody {
	b := &requestBody{done: make(chan struct{}), client: s.client, up: u.conn}
	if req.Framing == NoBody {
		close(b.done)
		return b
	}
	s.bodies.Add(1)
	go func() {
		defer s.bodies.Done()
		defer close(b.done)
		// Each read from the client gets bodyTimeout: the deadline moves
		// on after every piece forwarded. A client that asked for a 100
		// may wait for it as long as the server takes: its clock starts
		// with the 100 (started) or its first bytes.
		if !req.Expect100 {
			b.extend()
		}
		w := &recordWriter{w: u.conn, wrote: b.extend}
		_, err := CopyBody(w, s.br, req.Framing, req.ContentLength, s.lim)
		b.setDeadline(time.Time{}) // a tunnel may follow
		if err != nil {
			b.mu.Lock()
			woken := b.stopped && netpipe.IsTimeout(err) // stop's doing, not the client's
			b.mu.Unlock()
			b.err, b.clientFailed = err, w.err == nil && !woken
			if b.clientFailed {
				// The upstream would wait for the rest forever; closing it
				// wakes the response read too.
				u.conn.Close()
			}
		}
	}()
	return b
}

// setDeadline sets the client's read deadline for the copy, unless stop
// has set its own.
func (b *requestBody) setDeadline(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.stopped {
		b.client.SetReadDeadline(t)
	}
}

// extend gives the client bodyTimeout from now for more of the body.
func (b *requestBody) extend() { b.setDeadline(time.Now().Add(bodyTimeout)) }

// started starts the body's clock, for a client that waited for a 100.
func (b *requestBody) started() {
	if !b.isDone() {
		b.extend()
	}
}

func (b *requestBody) wait() { <-b.done }

func (b *requestBody) isDone() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// stop wakes a copy blocked on the client, or on an upstream that no
// longer reads (every caller drops that upstream connection after), and
// waits for it to end. The client's remaining body bytes are left unread.
func (b *requestBody) stop(client net.Conn) {
	if b.isDone() {
		return
	}
	b.mu.Lock()
	b.stopped = true
	client.SetReadDeadline(aLongTimeAgo)
	b.up.SetWriteDeadline(aLongTimeAgo)
	b.mu.Unlock()
	<-b.done
	client.SetReadDeadline(time.Time{})
}

// finish waits for the rest of the body once the response is complete,
// and reports whether all of it was read from the client, so that the
// next request starts where the client connection stands. When the
// connection closes anyway (closing) nothing is waited for. A body sent
// with Expect: 100-continue that got no 100 (unsure) may never come, so
// it gets expectGrace. Otherwise the client is sending it and the
// upstream reading it: wait up to idle.
func (b *requestBody) finish(client net.Conn, idle time.Duration, closing, unsure bool) bool {
	if !b.isDone() {
		wait := idle
		switch {
		case closing:
			wait = 0
		case unsure:
			wait = expectGrace
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-b.done:
		case <-t.C:
			b.stop(client)
			return false
		}
	}
	return b.err == nil
}

// recordWriter remembers the error of a failed write, and calls wrote
// after each write that succeeded.
type recordWriter struct {
	w     io.Writer
	err   error
	wrote func()
}

func (r *recordWriter) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	if err != nil {
		r.err = err
	} else {
		r.wrote()
	}
	return n, err
}
