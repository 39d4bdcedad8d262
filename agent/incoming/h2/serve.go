// Package h2 proxies HTTP/2 cleartext (h2c with prior knowledge) client connections per
// stream, for filtered steal: each request goes to the upstream the caller's route picks (a
// session's local process) or to the pod's original server, over pooled h2c connections.
// gRPC works: bodies stream both ways concurrently and trailers (trailers-only responses too)
// are kept.
//
// Both sides are net/http's own HTTP/2 (h2c only): the server, whose defenses against hostile
// input (bad frames, header and CONTINUATION floods, rapid reset, control-frame floods)
// apply, serves the one accepted connection through a listener that yields only it; the
// upstream side is a Transport per upstream.
package h2

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ClientPreface is what an h2c prior-knowledge client sends first.
const ClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Options limits one served client connection. Zero values mean the defaults given.
type Options struct {
	// MaxConcurrentStreams is advertised to the client (SETTINGS_MAX_CONCURRENT_STREAMS).
	// Default net/http's, 250.
	MaxConcurrentStreams uint32
	// MaxHeaderBytes bounds a request's header list (advertised as
	// SETTINGS_MAX_HEADER_LIST_SIZE; larger header blocks are answered 431, and a
	// CONTINUATION flood closes the connection). Default net/http's, 1 MiB.
	MaxHeaderBytes int
	// IdleTimeout closes (with GOAWAY) a connection that has had no open stream this long.
	// Zero: none.
	IdleTimeout time.Duration
	// ReadHeaderTimeout bounds the time from the start of Serve until the client's first
	// request headers have arrived (preface, SETTINGS and the first HEADERS block); the
	// connection is closed when it passes. HTTP/2 has no per-request equivalent: a header block
	// stalled later on is caught by ReadIdleTimeout/PingTimeout. Zero: none (net/http still
	// closes a connection whose preface takes over 10 s).
	ReadHeaderTimeout time.Duration
	// ReadIdleTimeout starts a PING health check when the client has been silent this long;
	// PingTimeout (default 15 s) closes the connection if it is not answered. Zero: none.
	ReadIdleTimeout time.Duration
	PingTimeout     time.Duration
	// ShutdownGrace is how long streams in flight may go on after ctx is done: a GOAWAY is
	// sent at once and the connection closed when its streams end or the grace passes.
	// Default DefaultShutdownGrace; negative closes at once.
	ShutdownGrace time.Duration
	// PrefaceConsumed says the caller has already read the 24-byte client preface from the
	// connection. Otherwise the connection's reads must start at the preface.
	PrefaceConsumed bool
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
	// CountError, if set, is called with a short name for each protocol error the client
	// causes (net/http's HTTP2Config.CountError), for metrics.
	CountError func(errType string)
}

// DefaultShutdownGrace is Options.ShutdownGrace's default.
const DefaultShutdownGrace = 5 * time.Second

// Serve serves one h2c client connection until the client or an error closes it, or ctx is
// done (see Options.ShutdownGrace). For each stream, route returns the upstream that takes the
// request, or nil for original. Requests are proxied over pool's connections; a stream whose
// upstream cannot be reached is answered 502 without affecting the others (one whose routed
// upstream is gone, ErrUseOriginal, goes to original). Serve closes client. It returns ctx's
// error if ctx ended it, else nil.
func Serve(ctx context.Context, client net.Conn, pool *Pool, route func(*http.Request) Upstream, original Upstream, opts Options) error {
	if pool == nil || original == nil {
		client.Close()
		return errors.New("h2: Serve needs a pool and an original upstream")
	}
	if err := ctx.Err(); err != nil {
		client.Close()
		return err
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	grace := opts.ShutdownGrace
	if grace == 0 {
		grace = DefaultShutdownGrace
	}

	var firstRequest sync.Once
	gotRequest := make(chan struct{})
	p := &proxy{
		pool:      pool,
		route:     route,
		original:  original,
		log:       lg,
		onRequest: func() { firstRequest.Do(func() { close(gotRequest) }) },
	}
	ln := newConnListener(client, opts.PrefaceConsumed)
	hs := &http.Server{
		Handler:        p,
		MaxHeaderBytes: opts.MaxHeaderBytes,
		IdleTimeout:    opts.IdleTimeout,
		ErrorLog:       log.New(io.Discard, "", 0),
		// Streams' contexts derive from the base context: keep ctx's values but not its
		// cancellation, so that streams may finish during the grace.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				ln.served()
			}
		},
		Protocols: new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: int(opts.MaxConcurrentStreams),
			SendPingTimeout:      opts.ReadIdleTimeout,
			PingTimeout:          opts.PingTimeout,
			CountError:           opts.CountError,
		},
	}
	hs.Protocols.SetUnencryptedHTTP2(true) // prior knowledge only: no HTTP/1, no Upgrade
	if lg.Enabled(ctx, slog.LevelDebug) {
		hs.ErrorLog = slog.NewLogLogger(lg.Handler(), slog.LevelDebug)
	}
	if opts.ReadHeaderTimeout > 0 {
		// Not a read deadline: net/http clears those once it has seen the preface.
		t := time.AfterFunc(opts.ReadHeaderTimeout, func() {
			select {
			case <-gotRequest:
			default:
				client.Close()
			}
		})
		defer t.Stop()
	}

	stop := context.AfterFunc(ctx, func() {
		if grace < 0 {
			client.Close()
			return
		}
		// Shutdown sends GOAWAY at once, then waits for the connection's streams to end.
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if hs.Shutdown(sctx) != nil {
			client.Close()
		}
	})
	hs.Serve(ln) // returns once the connection is served, or at Shutdown
	if ln.handedOut.Load() {
		<-ln.done
	} // else ctx ended before Serve accepted it
	stop()
	client.Close()
	return ctx.Err()
}

// connListener yields one connection, then blocks until it has been served (or the
// listener is closed) and reports net.ErrClosed, which ends http.Server.Serve.
type connListener struct {
	conn      net.Conn
	accepted  sync.Once
	handedOut atomic.Bool
	done      chan struct{} // closed once the connection is served
	closed    chan struct{}
	doneOnce  sync.Once
	closeOnce sync.Once
}

func newConnListener(c net.Conn, prefaceConsumed bool) *connListener {
	if prefaceConsumed {
		c = &prefacedConn{Conn: c, r: strings.NewReader(ClientPreface)}
	}
	return &connListener{conn: c, done: make(chan struct{}), closed: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.accepted.Do(func() { c = l.conn; l.handedOut.Store(true) })
	if c != nil {
		return c, nil
	}
	select {
	case <-l.done:
	case <-l.closed:
	}
	return nil, net.ErrClosed
}

func (l *connListener) served() { l.doneOnce.Do(func() { close(l.done) }) }

// Close stops Accept; Shutdown calls it, and the served connection goes on.
func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.conn.LocalAddr() }

// prefacedConn gives back the client preface its caller already read.
type prefacedConn struct {
	net.Conn
	r *strings.Reader
}

func (c *prefacedConn) Read(b []byte) (int, error) {
	if c.r.Len() > 0 {
		return c.r.Read(b)
	}
	return c.Conn.Read(b)
}
