package http1

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/agent/incoming/httpfilter"
)

// tcpUpstream dials an address on loopback.
type tcpUpstream string

func (a tcpUpstream) Dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", string(a))
}

// recorder keeps every byte its servers' connections read and wrote.
type recorder struct {
	mu    sync.Mutex
	conns []*recConn
}

type recConn struct {
	net.Conn
	rec     *recorder
	in, out bytes.Buffer
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.rec.mu.Lock()
	c.in.Write(p[:n])
	c.rec.mu.Unlock()
	return n, err
}

func (c *recConn) Write(p []byte) (int, error) {
	c.rec.mu.Lock()
	c.out.Write(p)
	c.rec.mu.Unlock()
	return c.Conn.Write(p)
}

type recListener struct {
	net.Listener
	rec *recorder
}

func (l recListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &recConn{Conn: conn, rec: l.rec}
	l.rec.mu.Lock()
	l.rec.conns = append(l.rec.conns, c)
	l.rec.mu.Unlock()
	return c, nil
}

// received returns what each connection read, in accept order.
func (r *recorder) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.conns {
		out = append(out, c.in.String())
	}
	return out
}

// sent returns what all connections wrote, in accept order.
func (r *recorder) sent() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, c := range r.conns {
		b.Write(c.out.Bytes())
	}
	return b.String()
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// httpServer runs a net/http server whose connections are recorded.
func httpServer(t *testing.T, name string, h http.HandlerFunc) (tcpUpstream, *recorder) {
	t.Helper()
	ln := listen(t)
	rec := &recorder{}
	srv := &http.Server{Handler: h}
	go srv.Serve(recListener{ln, rec})
	t.Cleanup(func() { srv.Close() })
	return tcpUpstream(ln.Addr().String()), rec
}

// rawServer calls handle for each connection, numbered from 0, recorded.
func rawServer(t *testing.T, handle func(n int, conn net.Conn, br *bufio.Reader)) (tcpUpstream, *recorder) {
	t.Helper()
	ln := listen(t)
	rec := &recorder{}
	rl := recListener{ln, rec}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	go func() {
		for n := 0; ; n++ {
			conn, err := rl.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				handle(n, conn, bufio.NewReader(conn))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return tcpUpstream(ln.Addr().String()), rec
}

// readHead reads up to and including a blank line.
func readHead(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\r\n" {
			return b.String(), nil
		}
	}
}

// routeByFilter sends the requests the filter matches to local.
func routeByFilter(t *testing.T, rule httpfilter.Rule, local Upstream) func(*Request) Upstream {
	f, err := httpfilter.Compile(rule)
	if err != nil {
		t.Fatal(err)
	}
	return func(r *Request) Upstream {
		if f.Match(httpfilter.Request{Method: r.Method, Path: r.Path, RawQuery: r.RawQuery, Header: r.Header}) {
			return local
		}
		return nil
	}
}

// localRule routes "X-Route: local" and paths under /local.
var localRule = httpfilter.Rule{AnyOf: []httpfilter.Rule{{Header: "^x-route: local$"}, {Path: "^/local"}}}

// serveAll serves the connections of a listener with Serve; the error
// each Serve returned arrives on errs.
func serveAll(t *testing.T, route func(*Request) Upstream, original Upstream, lim Limits) (addr string, errs chan error) {
	t.Helper()
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	errs = make(chan error, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- Serve(ctx, conn, bufio.NewReader(conn), route, original, lim)
			}()
		}
	}()
	return ln.Addr().String(), errs
}

// client is a raw client connection that keeps all it received.
type client struct {
	t    *testing.T
	conn net.Conn
	got  bytes.Buffer
	br   *bufio.Reader
	used int // bytes of got already handed out by response
}

func dialClient(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &client{t: t, conn: conn}
	c.br = bufio.NewReader(io.TeeReader(conn, &c.got))
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

// response reads one response with net/http's parser and returns it, its
// body, and the raw bytes it took on the wire.
func (c *client) response(method string) (*http.Response, string, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading a response: %v (received %q)", err, c.got.String()[c.used:])
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading a response body: %v", err)
	}
	end := c.got.Len() - c.br.Buffered()
	raw := c.got.String()[c.used:end]
	c.used = end
	return resp, string(body), raw
}

// rest reads until the connection ends and returns what came; then it
// closes its side, as a client does (Serve lingers until it does).
func (c *client) rest() string {
	c.t.Helper()
	b, err := io.ReadAll(c.br)
	c.conn.Close()
	if err != nil {
		c.t.Fatalf("reading to the end: %v", err)
	}
	return string(b)
}
