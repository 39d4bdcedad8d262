package protocol

import (
	"errors"
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

// newMux starts yamux on conn: the helper is yamux's client. The wire is
// what yamux writes through.
// unread is what was read from conn before (the agent peeks at its first byte).
func newMux(conn net.Conn, unread []byte, client bool, log *slog.Logger) (*yamux.Session, *wire, error) {
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
	w := newWire(conn, unread, client)
	var mux *yamux.Session
	var err error
	if client {
		mux, err = yamux.Client(w, cfg)
	} else {
		mux, err = yamux.Server(w, cfg)
	}
	return mux, w, err
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

// errStreamCut: a stream's bytes ended because its transport broke, not
// because the peer finished sending.
var errStreamCut = errors.New("the stream ended with its transport")

// streamEOF is err, unless it is the EOF every stream of a closed session
// reads (yamux closes them all when its connection breaks): that one is
// no FIN, and passing it on would make a cut-short file or response look
// complete.
func streamEOF(mux *yamux.Session, err error) error {
	if err == io.EOF && mux.IsClosed() {
		return fmt.Errorf("%w: %w", ErrConnectionLost, errStreamCut)
	}
	return err
}
