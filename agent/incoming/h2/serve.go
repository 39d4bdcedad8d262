//lint:file-ignore SA1019 x/net/http2 is deprecated for net/http's own HTTP/2, which has no ServeConn for one accepted connection nor a per-upstream client to Forget; see docs/status.md.

// Package h2 proxies HTTP/2 cleartext (h2c with prior knowledge) client connections per
// stream, for filtered steal: each request goes to the upstream the caller's route picks (a
// session's local process) or to the pod's original server, over pooled h2c connections.
// gRPC works: bodies stream both ways concurrently and trailers (trailers-only responses too)
// are kept.
//
// The server side is golang.org/x/net/http2's Server, whose defenses against hostile input
// (bad frames, header and CONTINUATION floods, rapid reset, control-frame floods) apply; the
// upstream side is x/net/http2's Transport.
package h2

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// ClientPreface is what an h2c prior-knowledge client sends first.
const ClientPreface = http2.ClientPreface

// Options limits one served client connection. Zero values mean the defaults given.
type Options struct {
	// MaxConcurrentStreams is advertised to the client (SETTINGS_MAX_CONCURRENT_STREAMS).
	// Default x/net's, 250.
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
	// stalled later on is caught by ReadIdleTimeout/PingTimeout. Zero: none (x/net still closes
	// a connection whose preface takes over 10 s).
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
	// causes (x/net/http2's CountError), for metrics.
	CountError func(errType string)
}

// DefaultShutdownGrace is Options.ShutdownGrace's default.
const DefaultShutdownGrace = 5 * time.Second

// Serve serves one h2c client connection until the client or an error closes it, or ctx is
// done (see Options.ShutdownGrace). For each stream, route returns the upstream that takes the
// request, or nil for original. Requests are proxied over pool's connections; a stream whose
// upstream cannot be reached is answered 502 without affecting the others. Serve closes
// client. It returns ctx's error if ctx ended it, else nil.
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

	hs := &http.Server{
		MaxHeaderBytes: opts.MaxHeaderBytes,
		ErrorLog:       log.New(io.Discard, "", 0),
	}
	if lg.Enabled(ctx, slog.LevelDebug) {
		hs.ErrorLog = slog.NewLogLogger(lg.Handler(), slog.LevelDebug)
	}
	h2s := &http2.Server{
		MaxConcurrentStreams: opts.MaxConcurrentStreams,
		IdleTimeout:          opts.IdleTimeout,
		ReadIdleTimeout:      opts.ReadIdleTimeout,
		PingTimeout:          opts.PingTimeout,
		CountError:           opts.CountError,
	}
	// Only for graceful shutdown: hs.Shutdown sends GOAWAY on the connections h2s serves.
	if err := http2.ConfigureServer(hs, h2s); err != nil {
		client.Close()
		return err
	}

	var firstRequest sync.Once
	if opts.ReadHeaderTimeout > 0 {
		client.SetReadDeadline(time.Now().Add(opts.ReadHeaderTimeout))
	}
	p := &proxy{
		pool:     pool,
		route:    route,
		original: original,
		log:      lg,
		onRequest: func() {
			if opts.ReadHeaderTimeout > 0 {
				firstRequest.Do(func() { client.SetReadDeadline(time.Time{}) })
			}
		},
	}

	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		if grace < 0 {
			client.Close()
			return
		}
		hs.Shutdown(context.Background()) // GOAWAY; returns at once (no HTTP/1 conns)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			client.Close()
		}
	})
	// Streams' contexts derive from the base context: keep ctx's values but not its
	// cancellation, so that streams may finish during the grace.
	h2s.ServeConn(client, &http2.ServeConnOpts{
		Context:          context.WithoutCancel(ctx),
		BaseConfig:       hs,
		Handler:          p,
		SawClientPreface: opts.PrefaceConsumed,
	})
	close(done)
	stop()
	client.Close()
	return ctx.Err()
}
