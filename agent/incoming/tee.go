package incoming

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/doppel-dev/doppel/protocol"
)

// mirrorBuffer bounds the bytes queued for one mirroring session on one
// connection. A local process that reads slower loses that connection's
// copy (the helper is told, and tells the user) — the pod's traffic never
// waits for a mirror.
const mirrorBuffer = 4 << 20

// mirrorDrain bounds a mirror's write of one chunk and its end (a
// variable for tests).
var mirrorDrain = 10 * time.Second

// tee is the client connection, copying every byte read from it to the
// mirroring sessions.
type tee struct {
	net.Conn
	sinks []*mirrorSink
}

func newTee(ctx context.Context, client net.Conn, mirrors []*sub, hdr protocol.IncomingHeader, log *slog.Logger) *tee {
	t := &tee{Conn: client}
	hdr.Mode = protocol.ModeMirror
	for _, m := range mirrors {
		t.sinks = append(t.sinks, newMirrorSink(ctx, m.sess.(Handoff), hdr, log))
	}
	return t
}

func (t *tee) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	if n > 0 {
		for _, s := range t.sinks {
			s.offer(b[:n])
		}
	}
	return n, err
}

// CloseWrite passes the half-close on to the client connection.
func (t *tee) CloseWrite() error { return closeWrite(t.Conn) }

// finish ends the copies once what is queued is sent.
func (t *tee) finish() {
	for _, s := range t.sinks {
		s.finish()
	}
}

// mirrorSink sends one session its copy of one connection.
type mirrorSink struct {
	mu      sync.Mutex
	cond    *sync.Cond
	queue   [][]byte
	queued  int
	done    bool   // no more bytes will come
	dropped string // why the copy was given up (protocol.ReasonMirror…)
}

func newMirrorSink(ctx context.Context, s Handoff, hdr protocol.IncomingHeader, log *slog.Logger) *mirrorSink {
	m := &mirrorSink{}
	m.cond = sync.NewCond(&m.mu)
	go m.run(ctx, s, hdr, log)
	return m
}

// offer queues a copy of b, or drops the mirror if it is too far behind.
func (m *mirrorSink) offer(b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dropped != "" || m.done {
		return
	}
	if m.queued+len(b) > mirrorBuffer {
		m.dropped = protocol.ReasonMirrorOverflow
		m.queue, m.queued = nil, 0
		m.cond.Signal()
		return
	}
	m.queue = append(m.queue, append([]byte(nil), b...))
	m.queued += len(b)
	m.cond.Signal()
}

func (m *mirrorSink) finish() {
	m.mu.Lock()
	m.done = true
	m.cond.Signal()
	m.mu.Unlock()
}

// next waits for queued bytes; ok is false once the copy is over.
func (m *mirrorSink) next() (b []byte, dropped string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.queue) == 0 && !m.done && m.dropped == "" {
		m.cond.Wait()
	}
	if m.dropped != "" {
		return nil, m.dropped, false
	}
	if len(m.queue) == 0 {
		return nil, "", false
	}
	b = m.queue[0]
	m.queue = m.queue[1:]
	m.queued -= len(b)
	return b, "", true
}

// drop gives the copy up for reason (protocol.ReasonMirror…).
func (m *mirrorSink) drop(reason string) {
	m.mu.Lock()
	m.dropped = reason
	m.queue, m.queued = nil, 0
	m.mu.Unlock()
}

func (m *mirrorSink) run(ctx context.Context, s Handoff, hdr protocol.IncomingHeader, log *slog.Logger) {
	conn, err := s.OpenIncoming(ctx, hdr)
	if err != nil {
		log.Debug("no mirror for this connection", "session", s.SessionID(), "port", hdr.Port, "err", err)
		m.drop(protocol.ReasonMirrorOverflow)
		return
	}
	for {
		b, dropped, ok := m.next()
		if dropped != "" {
			log.Info("mirror dropped", "session", s.SessionID(), "port", hdr.Port, "reason", dropped)
			if a, ok := conn.(interface{ Abort(reason string) error }); ok {
				a.Abort(dropped) // *protocol.IncomingConn tells the helper why
			} else {
				conn.Close()
			}
			return
		}
		if !ok {
			// The helper closes its side once the local process is done
			// with the copy: wait for that (bounded by the helper), so
			// that the end is not taken for an abort.
			closeWrite(conn)
			conn.SetReadDeadline(time.Now().Add(mirrorDrain))
			io.Copy(io.Discard, conn)
			conn.Close()
			return
		}
		conn.SetWriteDeadline(time.Now().Add(mirrorDrain))
		if _, err := conn.Write(b); err != nil {
			m.drop(protocol.ReasonMirrorOverflow) // told to the helper on the next turn
		}
	}
}
