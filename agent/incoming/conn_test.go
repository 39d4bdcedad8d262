package incoming

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/agent/incoming/h2"
	"github.com/doppel-dev/doppel/agent/incoming/http1"
	"github.com/doppel-dev/doppel/agent/incoming/httpfilter"
	"github.com/doppel-dev/doppel/internal/testnet"
	"github.com/doppel-dev/doppel/protocol"
)

func TestDetectDoesNotWaitForMore(t *testing.T) {
	for _, c := range []struct {
		send string
		want http1.Kind
	}{
		{"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", http1.HTTP1},
		{http1.Preface, http1.HTTP2Preface},
		{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", http1.Other}, // a TLS hello
	} {
		a, b := net.Pipe()
		go a.Write([]byte(c.send))
		start := time.Now()
		got := detect(b, bufio.NewReader(b))
		if took := time.Since(start); got != c.want || took > detectTimeout/2 {
			t.Errorf("%q: %v after %v, want %v at once", c.send, got, took, c.want)
		}
		a.Close()
		b.Close()
	}
}

// stalledSession is a mirroring session whose local process never reads.
type stalledSession struct {
	aborted chan string
}

func (s *stalledSession) SessionID() string { return "stalled" }
func (s *stalledSession) Describe() string  { return "stalled" }
func (s *stalledSession) OpenIncoming(context.Context, protocol.IncomingHeader) (net.Conn, error) {
	a, _ := net.Pipe() // nobody reads the other end
	return &abortConn{Conn: a, aborted: s.aborted}, nil
}

type abortConn struct {
	net.Conn
	aborted chan string
}

func (c *abortConn) Abort(reason string) error {
	c.aborted <- reason
	return c.Close()
}

// TestMirrorNeverSlowsThePod: a client sends 16 MiB through a mirrored
// port whose mirror never reads; the pod's server gets it all at full
// speed and the mirror is dropped with its reason.
func TestMirrorNeverSlowsThePod(t *testing.T) {
	defer func(d time.Duration) { mirrorDrain = d }(mirrorDrain)
	mirrorDrain = 200 * time.Millisecond
	dst := netip.MustParseAddrPort(testnet.Serve(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d", n)
	}))
	stalled := &stalledSession{aborted: make(chan string, 1)}
	tb := newTable()
	tb.add(dst.Port(), &sub{sess: stalled, mode: protocol.ModeMirror}, false)
	r := &router{table: tb, log: slog.New(slog.DiscardHandler),
		dialOriginal: func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", dst.String())
		}}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	client, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	served, err := front.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go r.serve(context.Background(), served, dst)

	const size = 16 << 20
	start := time.Now()
	go func() {
		client.Write(make([]byte, size))
		client.(*net.TCPConn).CloseWrite()
	}()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, err := io.ReadAll(client)
	if string(reply) != fmt.Sprintf("got %d", size) {
		t.Fatalf("the pod's server answered %q (%v)", reply, err)
	}
	t.Logf("16 MiB through a mirrored port with a stalled mirror in %v", time.Since(start).Round(time.Millisecond))
	select {
	case reason := <-stalled.aborted:
		if reason != protocol.ReasonMirrorOverflow {
			t.Errorf("mirror aborted with %q", reason)
		}
	case <-time.After(5 * time.Second):
		t.Error("the stalled mirror was not dropped")
	}
}

// startNamed serves HTTP/1 and h2c on 127.0.0.1, answering with name.
func startNamed(t *testing.T, name string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }),
		Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// localSession hands requests to its local server, or fails as a session
// between transports does.
type localSession struct {
	id, addr string
	detached atomic.Bool
}

func (s *localSession) SessionID() string { return s.id }
func (s *localSession) Describe() string  { return s.id }
func (s *localSession) OpenIncoming(ctx context.Context, _ protocol.IncomingHeader) (net.Conn, error) {
	if s.detached.Load() {
		return nil, protocol.ErrDetached
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", s.addr)
}

// TestFilteredFollowsSubscriptions: the requests of one keep-alive
// connection go where the table says when each comes, not when the
// connection came; a request for a session that can't take it (between
// transports) goes to the pod's server, not a 502.
func TestFilteredFollowsSubscriptions(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			dst := netip.MustParseAddrPort(startNamed(t, "original"))
			alice := &localSession{id: "alice", addr: startNamed(t, "local")}
			aliceSub := func() *sub {
				return &sub{sess: alice, mode: protocol.ModeSteal, filter: filter(t, httpfilter.Rule{Header: "^x-user: alice$"})}
			}
			tb := newTable()
			tb.add(dst.Port(), aliceSub(), false)
			pool := h2.NewPool(h2.PoolOptions{})
			defer pool.Close()
			r := &router{table: tb, pool: pool, log: slog.New(slog.DiscardHandler),
				dialOriginal: func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "tcp", dst.String())
				}}
			front := serveRouter(t, r, dst)
			var dials atomic.Int32
			tr := &http.Transport{Protocols: new(http.Protocols), DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				dials.Add(1)
				var d net.Dialer
				return d.DialContext(ctx, "tcp", front)
			}}
			if proto == "HTTP/2.0" {
				tr.Protocols.SetUnencryptedHTTP2(true)
			} else {
				tr.Protocols.SetHTTP1(true)
			}
			defer tr.CloseIdleConnections()
			get := func(step, want string) {
				t.Helper()
				req, _ := http.NewRequest("GET", "http://svc/", nil)
				req.Header.Set("X-User", "alice")
				res, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.Proto != proto || string(body) != want {
					t.Errorf("%s: %s %d %q, want %q", step, res.Proto, res.StatusCode, body, want)
				}
			}

			alice.detached.Store(true)
			get("session between transports", "original")
			alice.detached.Store(false)
			get("session back", "local")
			tb.removeSession("alice")
			pool.ForgetPrefix("session alice ")
			get("session ended", "original")
			tb.add(dst.Port(), aliceSub(), false)
			get("subscribed again", "local")
			if n := dials.Load(); n != 1 {
				t.Errorf("%d client connections, want 1", n)
			}
		})
	}
}

// serveFilteredPort redirects the connections of a listener to r.serve for
// dst, whose port has a filtered steal routing /local to local; it returns
// the listener's address.
func serveFilteredPort(t *testing.T, dst netip.AddrPort, local string) string {
	t.Helper()
	alice := &localSession{id: "alice", addr: local}
	tb := newTable()
	tb.add(dst.Port(), &sub{sess: alice, mode: protocol.ModeSteal, filter: filter(t, httpfilter.Rule{Path: "^/local"})}, false)
	pool := h2.NewPool(h2.PoolOptions{})
	t.Cleanup(func() { pool.Close() })
	r := &router{table: tb, pool: pool, log: slog.New(slog.DiscardHandler),
		dialOriginal: func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", dst.String())
		}}
	return serveRouter(t, r, dst)
}

// serveRouter hands the connections of a new listener to r.serve for dst
// until the test ends; it returns the listener's address.
func serveRouter(t *testing.T, r *router, dst netip.AddrPort) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); front.Close() })
	go func() {
		for {
			c, err := front.Accept()
			if err != nil {
				return
			}
			go r.serve(ctx, c, dst)
		}
	}()
	return front.Addr().String()
}

// TestFilteredPassesOtherTextProtocols: lines of words that are not an
// HTTP/1 request line reach the pod's server unchanged (not a 400), and a
// request line split over segments is still taken for HTTP.
func TestFilteredPassesOtherTextProtocols(t *testing.T) {
	// The pod's server echoes what it got once the client half-closes.
	dst := netip.MustParseAddrPort(testnet.Serve(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		fmt.Fprintf(c, "echo:%s", b)
	}))
	addr := serveFilteredPort(t, dst, startNamed(t, "local"))
	for _, send := range []string{
		"get foo\r\n",                          // memcached
		"SET a b\r\n",                          // Redis inline
		"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3\r\n",   // SSH banner
		"NICK x\r\nUSER x 0 * :X\r\n",          // IRC
		"GET / HTTP/1.1\nHost: x\n\n",          // bare LFs: not for the agent to parse
		"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\nmore", // not the preface
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, send)
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if string(got) != "echo:"+send {
			t.Errorf("%q: the client got %q (%v), want it echoed by the pod's server", send, got, err)
		}
	}

	t.Run("split request line", func(t *testing.T) {
		for _, parts := range [][]string{
			{"GE", "T /local HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
			{"GET /lo", "cal HTTP/1", ".1\r", "\nHost: x\r\nConnection: close\r\n\r\n"},
		} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			for i, p := range parts {
				if i > 0 {
					time.Sleep(50 * time.Millisecond)
				}
				io.WriteString(c, p)
			}
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("%q: %v", parts, err)
			}
			body, _ := io.ReadAll(res.Body)
			c.Close()
			if string(body) != "local" {
				t.Errorf("%q: %d %q, want the filter's upstream", parts, res.StatusCode, body)
			}
		}
	})
}

// TestFilteredH2IdleTimeout: an h2c client that sends its preface and
// SETTINGS, then nothing, gets a GOAWAY after the idle timeout and is
// closed (net/http waits 1 s more for the client to close first).
func TestFilteredH2IdleTimeout(t *testing.T) {
	defer func(o h2.Options) { h2Limits = o }(h2Limits)
	h2Limits.IdleTimeout = 300 * time.Millisecond
	dst := netip.MustParseAddrPort(startNamed(t, "original"))
	addr := serveFilteredPort(t, dst, startNamed(t, "local"))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	io.WriteString(c, http1.Preface+"\x00\x00\x00\x04\x00\x00\x00\x00\x00") // an empty SETTINGS frame
	_, err = io.Copy(io.Discard, c)
	if el := time.Since(start); err != nil || el < 200*time.Millisecond {
		t.Errorf("idle connection ended after %v with %v, want closed after about 300ms", el, err)
	}
}
