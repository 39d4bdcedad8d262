package incoming

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/doppel-dev/doppel/agent/incoming/h2"
	"github.com/doppel-dev/doppel/agent/incoming/http1"
	"github.com/doppel-dev/doppel/agent/incoming/httpfilter"
	"github.com/doppel-dev/doppel/internal/netpipe"
	"github.com/doppel-dev/doppel/protocol"
)

// detectTimeout bounds the wait for a client's first bytes, up to a whole
// request line, on a port with filters: a protocol where the server speaks
// first (SMTP, MySQL) passes through after it.
const detectTimeout = time.Second

// h2Limits bound a served HTTP/2 client connection (tests shorten them).
// IdleTimeout counts only time without open streams, so long gRPC streams
// are unaffected; a silent peer is PINGed and dropped if it doesn't answer.
// No ReadHeaderTimeout: a gRPC client that connects ahead of its first
// call must not be cut off; IdleTimeout bounds a connection that never
// sends one.
var h2Limits = h2.Options{
	IdleTimeout:     2 * time.Minute,
	ReadIdleTimeout: 30 * time.Second,
	PingTimeout:     15 * time.Second,
}

// Handoff is a session that can take incoming connections
// (protocol.SessionInfo in the agent).
type Handoff interface {
	Session
	OpenIncoming(ctx context.Context, hdr protocol.IncomingHeader) (net.Conn, error)
}

// router sends each redirected connection its way.
type router struct {
	table *table
	// dialOriginal connects to the original destination from the pod,
	// bypassing the redirect (SO_MARK).
	dialOriginal func(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	pool         *h2.Pool
	lim          http1.Limits
	log          *slog.Logger

	mu     sync.Mutex
	active map[uint16]map[net.Conn]struct{} // redirected connections by port
}

// track records a connection being served until the returned func runs.
func (r *router) track(port uint16, c net.Conn) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active == nil {
		r.active = map[uint16]map[net.Conn]struct{}{}
	}
	if r.active[port] == nil {
		r.active[port] = map[net.Conn]struct{}{}
	}
	r.active[port][c] = struct{}{}
	return func() {
		r.mu.Lock()
		delete(r.active[port], c)
		r.mu.Unlock()
	}
}

// closePort resets the connections the agent holds on port (passed
// through or mirrored): when a steal starts they must reconnect, as the
// ones the kernel holds do after redirect.Flush.
func (r *router) closePort(port uint16) int {
	r.mu.Lock()
	conns := r.active[port]
	delete(r.active, port)
	r.mu.Unlock()
	for c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, as SOCK_DESTROY gives
		}
		c.Close()
	}
	return len(conns)
}

// serve handles one redirected connection whose original destination is
// dst, and closes it.
func (r *router) serve(ctx context.Context, client net.Conn, dst netip.AddrPort) {
	defer client.Close()
	defer func() {
		// A bug on one connection must not take the agent (and every
		// session's traffic) down with it.
		if v := recover(); v != nil {
			r.log.Error("internal error serving a redirected connection", "port", dst.Port(), "panic", v, "stack", string(debug.Stack()))
		}
	}()
	rt := r.table.route(dst.Port())
	if rt.steal == nil {
		// A stolen connection is the thief's for good; the others are
		// reset if a steal starts.
		defer r.track(dst.Port(), client)()
	}
	hdr := protocol.IncomingHeader{Port: dst.Port(), Remote: client.RemoteAddr().String(), Local: dst.String()}
	var in net.Conn = client
	if len(rt.mirrors) > 0 {
		t := newTee(ctx, client, rt.mirrors, hdr, r.log)
		defer t.finish()
		in = t
	}
	switch {
	case rt.steal != nil:
		h := hdr
		h.Mode = protocol.ModeSteal
		up, err := rt.steal.sess.(Handoff).OpenIncoming(ctx, h)
		if err != nil {
			// The session is between transports, or its process does not
			// listen: the pod's own server answers rather than nobody.
			r.log.Info("stolen connection passed through: the session can't take it", "port", dst.Port(), "err", err)
			r.passthrough(ctx, in, dst)
			return
		}
		netpipe.Join(in, up)
	case len(rt.filtered) > 0:
		r.serveFiltered(ctx, in, dst, hdr)
	default:
		r.passthrough(ctx, in, dst)
	}
}

// passthrough connects client to the original server.
func (r *router) passthrough(ctx context.Context, client net.Conn, dst netip.AddrPort) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	up, err := r.dialOriginal(dctx, dst)
	cancel()
	if err != nil {
		r.log.Info("the original server can't be reached", "dst", dst, "err", err)
		return
	}
	netpipe.Join(client, up)
}

// serveFiltered detects HTTP and routes each request by the filters.
func (r *router) serveFiltered(ctx context.Context, in net.Conn, dst netip.AddrPort, hdr protocol.IncomingHeader) {
	br := bufio.NewReaderSize(in, http1.MaxPeek)
	kind := detect(in, br)
	buffered := &peekedConn{Conn: in, r: br}
	original := &originalUpstream{r: r, dst: dst}
	switch kind {
	case http1.HTTP1:
		route := func(req *http1.Request) http1.Upstream {
			if s := r.table.match(dst.Port(), httpfilter.Request{Method: req.Method, Path: req.Path, RawQuery: req.RawQuery, Header: req.Header}); s != nil {
				return sessionUpstream{s: s.sess.(Handoff), hdr: hdr, table: r.table}
			}
			return nil
		}
		if err := http1.Serve(ctx, in, br, route, original, r.lim); err != nil {
			r.log.Debug("HTTP/1 connection ended", "port", dst.Port(), "err", err)
		}
	case http1.HTTP2Preface:
		route := func(req *http.Request) h2.Upstream {
			method, path, query, header := h2.FilterFields(req)
			if s := r.table.match(dst.Port(), httpfilter.Request{Method: method, Path: path, RawQuery: query, Header: header}); s != nil {
				return sessionUpstream{s: s.sess.(Handoff), hdr: hdr, table: r.table}
			}
			return nil
		}
		opts := h2Limits
		opts.Logger = r.log
		if err := h2.Serve(ctx, buffered, r.pool, route, original, opts); err != nil {
			r.log.Debug("HTTP/2 connection ended", "port", dst.Port(), "err", err)
		}
	default:
		r.passthrough(ctx, buffered, dst)
	}
}

// detect looks at the client's first bytes: what is buffered, and more
// only while that is not enough to tell, within detectTimeout. A request
// line split over segments is waited for; one that is not complete in
// time passes through (br holds http1.MaxPeek).
func detect(in net.Conn, br *bufio.Reader) http1.Kind {
	in.SetReadDeadline(time.Now().Add(detectTimeout))
	defer in.SetReadDeadline(time.Time{})
	if _, err := br.Peek(1); err != nil {
		return http1.Other
	}
	for {
		b, _ := br.Peek(br.Buffered())
		if k := http1.Detect(b); k != http1.NeedMore {
			return k
		}
		if len(b) >= http1.MaxPeek {
			return http1.Other
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return http1.Other
		}
	}
}

// originalUpstream is the pod's own server.
type originalUpstream struct {
	r   *router
	dst netip.AddrPort
}

func (o *originalUpstream) Key() string { return "original " + o.dst.String() }
func (o *originalUpstream) Dial(ctx context.Context) (net.Conn, error) {
	return o.r.dialOriginal(ctx, o.dst)
}

// sessionUpstream is a session's local process, for the requests its
// filter matched.
type sessionUpstream struct {
	s     Handoff
	hdr   protocol.IncomingHeader
	table *table
}

func (u sessionUpstream) Key() string { return "session " + u.s.SessionID() + " " + u.hdr.Local }
func (u sessionUpstream) Dial(ctx context.Context) (net.Conn, error) {
	h := u.hdr
	h.Mode = protocol.ModeRequest
	c, err := u.s.OpenIncoming(ctx, h)
	if err != nil && (errors.Is(err, protocol.ErrDetached) || !u.Live()) {
		// The session is between transports, or ended or left the port
		// since the request was routed: the pod's own server answers, as
		// it does an unfiltered steal's connection, rather than a 502.
		return nil, sessionGone{err}
	}
	return c, err
}

// Live tells the h2 pool whether the session still takes the port's
// requests.
func (u sessionUpstream) Live() bool { return u.table.filtering(u.hdr.Port, u.s.SessionID()) }

// sessionGone sends a request back to the original server (in either
// protocol).
type sessionGone struct{ error }

func (e sessionGone) Unwrap() error { return e.error }
func (e sessionGone) Is(target error) bool {
	return target == http1.ErrUseOriginal || target == h2.ErrUseOriginal
}

// peekedConn reads what detection buffered first.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite passes half-closes through (tee and TCP conns have it).
func (c *peekedConn) CloseWrite() error { return closeWrite(c.Conn) }

func closeWrite(c net.Conn) error { return netpipe.CloseWrite(c) }
