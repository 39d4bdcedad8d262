//lint:file-ignore SA1019 x/net/http2 is deprecated for net/http's own HTTP/2, which has no ServeConn for one accepted connection nor a per-upstream client to Forget; see docs/status.md.

package h2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// Upstream is where a request can go: the pod's original server, or a session's local process
// reached through a tunnel.
type Upstream interface {
	// Key identifies the destination. Upstreams with equal keys must be interchangeable: the
	// Pool keeps one HTTP/2 client (and so, normally, one connection) per key, dialled with
	// the first Upstream it saw for that key.
	Key() string
	// Dial opens a new connection that speaks HTTP/2 cleartext (prior knowledge). ctx bounds
	// only the dial: the connection must outlive it. The connection is shared by many streams
	// of many client connections.
	Dial(ctx context.Context) (net.Conn, error)
}

// PoolOptions configures the upstream side. Zero values mean the defaults given.
type PoolOptions struct {
	// DialTimeout bounds one Upstream.Dial. Default DefaultDialTimeout. A dial is shared by
	// the streams waiting for it, so it is not cancelled when the stream that started it is.
	DialTimeout time.Duration
	// IdleConnTimeout closes an upstream connection without streams after this long.
	// Default DefaultIdleConnTimeout.
	IdleConnTimeout time.Duration
	// ReadIdleTimeout starts a PING health check of an upstream connection that has been
	// silent this long; PingTimeout closes it if the PING is not answered. Zero: no health
	// check (PingTimeout's default is x/net's, 15 s).
	ReadIdleTimeout time.Duration
	PingTimeout     time.Duration
	// MaxResponseHeaderBytes bounds an upstream response's header list. Default x/net's (10 MiB).
	MaxResponseHeaderBytes uint32
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
	// CountError, if set, is called with a short name for each protocol error on an upstream
	// connection (x/net/http2's CountError).
	CountError func(errType string)
}

// Defaults of PoolOptions.
const (
	DefaultDialTimeout     = 10 * time.Second
	DefaultIdleConnTimeout = 90 * time.Second
)

// ErrPoolClosed is returned (and answered as 502) once the Pool is closed.
var ErrPoolClosed = errors.New("h2: upstream pool closed")

// errForgotten is returned by a dial that completes after its key was forgotten.
var errForgotten = errors.New("h2: upstream forgotten")

// Pool holds one HTTP/2 client per upstream key, shared by every client connection served with
// it. Its owner closes it; Forget drops one key (a session that ended).
type Pool struct {
	opts PoolOptions
	log  *slog.Logger

	mu     sync.Mutex
	closed bool
	ents   map[string]*upstreamConns
}

// NewPool returns an empty Pool.
func NewPool(opts PoolOptions) *Pool {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.IdleConnTimeout <= 0 {
		opts.IdleConnTimeout = DefaultIdleConnTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pool{opts: opts, log: log, ents: make(map[string]*upstreamConns)}
}

// upstreamConns is the client side of one upstream key: an http2.Transport (its own
// connection pool) and the connections it dialled, so that Forget can close busy ones too.
type upstreamConns struct {
	key    string
	t      *http2.Transport
	ctx    context.Context // cancelled when forgotten: aborts dials in progress
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	conns  map[*trackedConn]struct{}
}

func (p *Pool) transport(up Upstream) (*upstreamConns, error) {
	key := up.Key()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrPoolClosed
	}
	if e := p.ents[key]; e != nil {
		return e, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &upstreamConns{key: key, ctx: ctx, cancel: cancel, conns: make(map[*trackedConn]struct{})}
	e.t = &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(_ context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			return e.dial(up, p.opts.DialTimeout)
		},
		// The upstream must see what the client sent: no added accept-encoding, no
		// transparent decompression.
		DisableCompression: true,
		IdleConnTimeout:    p.opts.IdleConnTimeout,
		ReadIdleTimeout:    p.opts.ReadIdleTimeout,
		PingTimeout:        p.opts.PingTimeout,
		MaxHeaderListSize:  p.opts.MaxResponseHeaderBytes,
		CountError:         p.opts.CountError,
	}
	p.ents[key] = e
	p.log.Debug("h2: new upstream", "key", key)
	return e, nil
}

// Forget drops the upstream with this key: its connections are closed at once, so streams in
// flight to it fail (their clients see the stream reset). A later request routed to the same
// key dials anew.
func (p *Pool) Forget(key string) {
	p.mu.Lock()
	e := p.ents[key]
	delete(p.ents, key)
	p.mu.Unlock()
	if e != nil {
		p.log.Debug("h2: forget upstream", "key", key)
		e.close()
	}
}

// ForgetPrefix forgets every upstream whose key starts with prefix (all
// the ports of a session that ended).
func (p *Pool) ForgetPrefix(prefix string) {
	p.mu.Lock()
	var keys []string
	for k := range p.ents {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	p.mu.Unlock()
	for _, k := range keys {
		p.Forget(k)
	}
}

// Close closes every upstream connection; requests after it are answered 502.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	ents := p.ents
	p.ents = nil
	p.mu.Unlock()
	for _, e := range ents {
		e.close()
	}
	return nil
}

func (e *upstreamConns) dial(up Upstream, timeout time.Duration) (net.Conn, error) {
	// Not the requesting stream's context: the transport shares this dial among the streams
	// waiting for a connection, so one stream's cancellation must not fail the others.
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	c, err := up.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial upstream %s: %w", e.key, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		c.Close()
		return nil, errForgotten
	}
	tc := &trackedConn{Conn: c, e: e}
	e.conns[tc] = struct{}{}
	return tc, nil
}

func (e *upstreamConns) close() {
	e.mu.Lock()
	e.closed = true
	conns := e.conns
	e.conns = nil
	e.mu.Unlock()
	e.cancel()
	for c := range conns {
		c.Conn.Close()
	}
	e.t.CloseIdleConnections()
}

// roundTrip sends one request upstream.
func (e *upstreamConns) roundTrip(req *http.Request) (*http.Response, error) {
	return e.t.RoundTrip(req)
}

type trackedConn struct {
	net.Conn
	e    *upstreamConns
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.e.mu.Lock()
		delete(c.e.conns, c)
		c.e.mu.Unlock()
	})
	return c.Conn.Close()
}
