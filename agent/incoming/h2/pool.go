package h2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
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

// ErrUseOriginal, returned (wrapped) by a routed Upstream's Dial, says the upstream can't take
// requests any more (its session ended or is away): the streams waiting for that dial go to
// the original upstream instead of getting a 502. Nothing of them was sent yet.
var ErrUseOriginal = errors.New("h2: upstream gone: use the original")

// liveUpstream is an Upstream that can tell it is gone. The Pool makes no entry for one that
// is (the route picked it just before its session ended, and ForgetPrefix may already have
// run: the entry would never be forgotten); its requests go to the original upstream.
type liveUpstream interface {
	Upstream
	Live() bool
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
	// check (PingTimeout's default is net/http's, 15 s).
	ReadIdleTimeout time.Duration
	PingTimeout     time.Duration
	// MaxResponseHeaderBytes bounds an upstream response's header list. Default net/http's (10 MiB).
	MaxResponseHeaderBytes uint32
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
	// CountError, if set, is called with a short name for each protocol error on an upstream
	// connection (net/http's HTTP2Config.CountError).
	CountError func(errType string)
}

// Defaults of PoolOptions.
const (
	DefaultDialTimeout     = 10 * time.Second
	DefaultIdleConnTimeout = 90 * time.Second
)

// ErrPoolClosed is returned (and answered as 502) once the Pool is closed.
var ErrPoolClosed = errors.New("h2: upstream pool closed")

// errForgotten is returned to the streams still waiting for an upstream whose key was forgotten
// (or that is gone): they go to the original upstream.
var errForgotten = fmt.Errorf("h2: upstream forgotten: %w", ErrUseOriginal)

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

// upstreamConns is the client side of one upstream key: its HTTP/2 connections, made with an
// h2c-only http.Transport's NewClientConn so that the streams of every client connection share
// them (a Transport's own pool dials once per waiting request), and the dial in progress.
type upstreamConns struct {
	key    string
	up     Upstream
	t      *http.Transport
	ctx    context.Context // cancelled when forgotten: aborts dials in progress
	cancel context.CancelFunc
	log    *slog.Logger

	mu      sync.Mutex
	closed  bool
	conns   []*http.ClientConn
	dialing *sharedDial // nil when no dial is in progress
}

// sharedDial is one dial that every stream finding no free connection waits for.
type sharedDial struct {
	done chan struct{}
	err  error
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
	if lu, ok := up.(liveUpstream); ok && !lu.Live() {
		return nil, errForgotten
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &upstreamConns{key: key, up: up, ctx: ctx, cancel: cancel, log: p.log}
	e.t = &http.Transport{
		Protocols: new(http.Protocols),
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			// Not the requesting stream's context: the dial is shared by the streams waiting
			// for a connection, so one stream's cancellation must not fail the others.
			dctx, cancel := context.WithTimeout(e.ctx, p.opts.DialTimeout)
			defer cancel()
			c, err := up.Dial(dctx)
			if err != nil {
				return nil, fmt.Errorf("dial upstream %s: %w", key, err)
			}
			return c, nil
		},
		// The upstream must see what the client sent: no added accept-encoding, no
		// transparent decompression.
		DisableCompression:     true,
		IdleConnTimeout:        p.opts.IdleConnTimeout,
		MaxResponseHeaderBytes: int64(p.opts.MaxResponseHeaderBytes),
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: p.opts.ReadIdleTimeout,
			PingTimeout:     p.opts.PingTimeout,
			CountError:      p.opts.CountError,
		},
	}
	e.t.Protocols.SetUnencryptedHTTP2(true) // prior knowledge, as the client spoke to us
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

// conn reserves a request on a connection that has room for it, dialling one when none has
// (a connection at the upstream's concurrency limit is not waited for).
func (e *upstreamConns) conn() (*http.ClientConn, error) {
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return nil, errForgotten
		}
		live := e.conns[:0]
		var found *http.ClientConn
		for _, cc := range e.conns {
			if cc.Err() != nil { // closed by the upstream, idle timeout, broken
				cc.Close()
				continue
			}
			live = append(live, cc)
			if found == nil && cc.Reserve() == nil {
				found = cc
			}
		}
		clear(e.conns[len(live):])
		e.conns = live
		if found != nil {
			e.mu.Unlock()
			return found, nil
		}
		d := e.dialing
		if d == nil {
			d = &sharedDial{done: make(chan struct{})}
			e.dialing = d
			go e.dial(d)
		}
		e.mu.Unlock()
		<-d.done
		if d.err != nil {
			return nil, d.err
		}
	}
}

func (e *upstreamConns) dial(d *sharedDial) {
	cc, err := e.t.NewClientConn(e.ctx, "http", upstreamHost+":80") // the address goes to DialContext, which ignores it
	e.mu.Lock()
	switch {
	case e.closed: // forgetting it may have failed the dial: that is not the upstream's fault
		if err == nil {
			cc.Close()
		}
		d.err = errForgotten
	case err != nil:
		d.err = err
	default:
		e.conns = append(e.conns, cc)
	}
	e.dialing = nil
	e.mu.Unlock()
	if err == nil {
		e.log.Debug("h2: new upstream connection", "key", e.key)
	}
	close(d.done)
}

// close closes the connections at once (their requests in flight fail) and aborts a dial.
func (e *upstreamConns) close() {
	e.mu.Lock()
	e.closed = true
	conns := e.conns
	e.conns = nil
	e.mu.Unlock()
	e.cancel()
	for _, cc := range conns {
		cc.Close()
	}
}

// roundTrip sends one request upstream.
func (e *upstreamConns) roundTrip(req *http.Request) (*http.Response, error) {
	cc, err := e.conn()
	if err != nil {
		return nil, err
	}
	return cc.RoundTrip(req)
}
