package protocol

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/yamux"
)

// Transport settings, the same on both sides (SPEC.md, "Transport").
const (
	// StreamWindow is each stream's receive window. The default 256 KiB made
	// yamux over a port-forward slower than kubectl's own port-forward;
	// 16 MiB made it faster (shared/notes/transport.md).
	StreamWindow = 16 << 20
	// DefaultMaxStreams bounds the concurrent data streams of one session on
	// the agent, and with StreamWindow the memory a stalled session can pin.
	DefaultMaxStreams = 256

	muxKeepAliveInterval = 15 * time.Second
	muxWriteTimeout      = 30 * time.Second
	muxOpenTimeout       = 30 * time.Second
	acceptBacklog        = 256

	// helloTimeout bounds the hello exchange and each data-stream header.
	helloTimeout = 10 * time.Second
)

// newMux starts yamux on conn: the helper is yamux's client.
func newMux(conn net.Conn, client bool, log *slog.Logger) (*yamux.Session, error) {
	cfg := &yamux.Config{
		AcceptBacklog:          acceptBacklog,
		EnableKeepAlive:        true,
		KeepAliveInterval:      muxKeepAliveInterval,
		ConnectionWriteTimeout: muxWriteTimeout,
		MaxStreamWindowSize:    StreamWindow,
		StreamOpenTimeout:      muxOpenTimeout,
		// No close timeout: yamux would reset a half-closed stream after it,
		// and a half-closed TCP connection may legitimately wait for its
		// answer for minutes. A full close is signalled with the abort op.
		StreamCloseTimeout: 0,
	}
	if log != nil {
		cfg.Logger = muxLogger{log}
	} else {
		cfg.LogOutput = io.Discard
	}
	cc := &coalescingConn{Conn: conn, tcp: isTCP(conn)}
	cc.vectors, _ = conn.(VectorWriter)
	conn = cc
	if client {
		return yamux.Client(conn, cfg)
	}
	return yamux.Server(conn, cfg)
}

func isTCP(c net.Conn) bool { _, ok := c.(*net.TCPConn); return ok }

// yamux's frame header: version, type, flags (2), stream id (4), length (4).
const (
	muxHeaderSize = 12
	muxTypeData   = 0
)

// coalescingConn sends a yamux data frame's header and body in one write.
// yamux writes them separately (two syscalls, and through a port-forward
// two SPDY frames that the runtime, kubelet, API server and client each
// handle apart); here a data header announcing a body is held back and
// sent with the next write, which is that body (yamux's send loop is the
// only writer, and writes a data frame's header then its body). Nothing
// on the wire changes.
type coalescingConn struct {
	net.Conn
	tcp     bool         // writev instead of copying the two together
	vectors VectorWriter // or the connection sends them as one message

	hdr     [muxHeaderSize]byte
	pending bool
	buf     []byte
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	if c.pending {
		c.pending = false
		if c.vectors != nil {
			n, err := c.vectors.WriteVectors(c.hdr[:], p)
			return max(n-muxHeaderSize, 0), err
		}
		if c.tcp {
			bufs := net.Buffers{c.hdr[:], p}
			n, err := bufs.WriteTo(c.Conn)
			return max(int(n)-muxHeaderSize, 0), err
		}
		c.buf = append(append(c.buf[:0], c.hdr[:]...), p...)
		n, err := c.Conn.Write(c.buf)
		if cap(c.buf) > 1<<20 {
			c.buf = nil // an unusually large frame: don't keep its buffer
		}
		return max(n-muxHeaderSize, 0), err
	}
	if len(p) == muxHeaderSize && p[1] == muxTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		copy(c.hdr[:], p)
		c.pending = true
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// VectorWriter is a connection that sends several buffers as one message
// (the helper's port-forward stream: one SPDY data frame), so a yamux
// frame's header and body need not be copied together first.
type VectorWriter interface {
	WriteVectors(bufs ...[]byte) (int, error)
}

// muxLogger sends yamux's own log lines to slog at debug level: what they
// report (a reset stream, a failed keepalive) also surfaces as an error
// from the stream or session where it matters.
type muxLogger struct{ log *slog.Logger }

func (l muxLogger) Print(v ...any) { l.log.Debug(fmt.Sprint(v...), "subsystem", "yamux") }
func (l muxLogger) Printf(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "subsystem", "yamux")
}
func (l muxLogger) Println(v ...any) { l.log.Debug(fmt.Sprint(v...), "subsystem", "yamux") }
