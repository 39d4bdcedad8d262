package h2

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// --- test servers, upstreams, proxy and client ---

// h2cServer is an h2c (prior knowledge) server on 127.0.0.1.
type h2cServer struct {
	addr     string
	accepted atomic.Int32
	connDone chan struct{} // one value per server connection that ended
}

func startH2C(t *testing.T, name string, h http.Handler) *h2cServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &h2cServer{addr: ln.Addr().String(), connDone: make(chan struct{}, 100)}
	srv := &http.Server{
		Handler:   h,
		Protocols: new(http.Protocols),
		ErrorLog:  log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.accepted.Add(1)
			case http.StateClosed:
				s.connDone <- struct{}{}
			}
		},
	}
	srv.Protocols.SetUnencryptedHTTP2(true)
	served := make(chan struct{})
	go func() { srv.Serve(ln); close(served) }()
	t.Cleanup(func() { srv.Close(); <-served })
	return s
}

type tcpUpstream struct {
	key, addr string
	dials     atomic.Int32
}

func (u *tcpUpstream) Key() string { return u.key }
func (u *tcpUpstream) Dial(ctx context.Context) (net.Conn, error) {
	u.dials.Add(1)
	var d net.Dialer
	return d.DialContext(ctx, "tcp", u.addr)
}

// startProxy accepts client connections on 127.0.0.1 and serves each with Serve. Cancelling
// the returned context's cancel ends them; Serve's results arrive on errs.
func startProxy(t *testing.T, pool *Pool, route func(*http.Request) Upstream, original Upstream, opts Options) (addr string, cancel context.CancelFunc, errs chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs = make(chan error, 100)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { errs <- Serve(ctx, c, pool, route, original, opts) })
		}
	})
	return ln.Addr().String(), cancel, errs
}

// h2cClient returns an h2c client that sends every request over one connection to addr
// (another once that one is unusable), and its dial count.
func h2cClient(t *testing.T, addr string) (*oneConnClient, *atomic.Int32) {
	c := &oneConnClient{t: &http.Transport{Protocols: new(http.Protocols)}}
	c.t.Protocols.SetUnencryptedHTTP2(true)
	c.t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		c.dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.cc != nil {
			c.cc.Close()
		}
	})
	return c, &c.dials
}

type oneConnClient struct {
	t     *http.Transport
	dials atomic.Int32
	mu    sync.Mutex
	cc    *http.ClientConn
}

func (c *oneConnClient) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.cc == nil || c.cc.Err() != nil {
		cc, err := c.t.NewClientConn(req.Context(), "http", "localhost:80")
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		c.cc = cc
	}
	cc := c.cc
	c.mu.Unlock()
	return cc.RoundTrip(req)
}

func routeUser(user string, up Upstream) func(*http.Request) Upstream {
	return func(r *http.Request) Upstream {
		if r.Header.Get("X-User") == user {
			return up
		}
		return nil
	}
}

func newPool(t *testing.T) *Pool {
	p := NewPool(PoolOptions{})
	t.Cleanup(func() { p.Close() })
	return p
}

// echo is what echoHandler reports about the request it got.
type echo struct {
	Server, Method, URI, Host, Body string
	Header                          http.Header
	ContentLength                   int64
}

// echoHandler answers with what it received, a response trailer, and no Content-Type.
// Each request waits at gate first (if set).
func echoHandler(name string, gate func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gate != nil {
			gate()
		}
		body, _ := io.ReadAll(r.Body)
		e := echo{Server: name, Method: r.Method, URI: r.RequestURI, Host: r.Host, Body: string(body), Header: r.Header, ContentLength: r.ContentLength}
		w.Header().Set("X-Server", name)
		w.Header()["Content-Type"] = nil // no sniffing here; the proxy must not add one either
		b, _ := json.Marshal(e)
		w.Write(b)
		w.Header().Set(http.TrailerPrefix+"X-Trailer", "done "+r.URL.Query().Get("i"))
	})
}

// --- gRPC-style framing (length-prefixed messages) ---

func writeMsg(w io.Writer, msg []byte) error {
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(msg)))
	_, err := w.Write(append(hdr[:], msg...))
	return err
}

func readMsg(r io.Reader) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	_, err := io.ReadFull(r, msg)
	return msg, err
}

func grpcRequest(t *testing.T, path, user string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest("POST", "http://grpc.example:50051"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("User-Agent", "grpc-go/test")
	if user != "" {
		req.Header.Set("X-User", user)
	}
	return req
}

// --- tests ---

// Interleaved streams on one client connection, some matched (x-user: alice) and some not:
// each lands on the right server, all in flight at once, requests and responses exact.
func TestRoutesStreamsOfOneConnection(t *testing.T) {
	const n = 20
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	gate := func() {
		arrived.Done()
		select { // every request is in flight at once, on both upstreams
		case <-all:
		case <-time.After(10 * time.Second):
		}
	}
	orig := startH2C(t, "original", echoHandler("original", gate))
	local := startH2C(t, "local", echoHandler("local", gate))
	origUp := &tcpUpstream{key: "original", addr: orig.addr}
	localUp := &tcpUpstream{key: "session-alice", addr: local.addr}
	pool := newPool(t)
	addr, _, _ := startProxy(t, pool, routeUser("alice", localUp), origUp, Options{})
	client, clientDials := h2cClient(t, addr)

	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf("body-%d", i)
			req, _ := http.NewRequest("POST", fmt.Sprintf("http://svc.example:8080/echo/%d?i=%d&x=%%2F", i, i), strings.NewReader(body))
			req.Header.Add("X-Multi", "a")
			req.Header.Add("X-Multi", "b, c")
			want := http.Header{
				"X-Multi":         {"a", "b, c"},
				"Content-Length":  {fmt.Sprint(len(body))},
				"Accept-Encoding": {"gzip"}, // the client transport's own
			}
			wantServer := "original"
			if i%2 == 0 {
				req.Header.Set("X-User", "alice")
				req.Header.Set("User-Agent", "test-agent")
				want["X-User"] = []string{"alice"}
				want["User-Agent"] = []string{"test-agent"}
				wantServer = "local"
			} else {
				req.Header["User-Agent"] = nil // sent without: the upstream must get none
			}
			res, err := client.RoundTrip(req)
			if err != nil {
				t.Errorf("%d: %v", i, err)
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil {
				t.Errorf("%d: read: %v", i, err)
				return
			}
			var e echo
			if err := json.Unmarshal(b, &e); err != nil {
				t.Errorf("%d: %v: %q", i, err, b)
				return
			}
			if res.StatusCode != 200 || e.Server != wantServer || res.Header.Get("X-Server") != wantServer {
				t.Errorf("%d: status %d, served by %q (header %q), want %q", i, res.StatusCode, e.Server, res.Header.Get("X-Server"), wantServer)
			}
			if e.Method != "POST" || e.URI != fmt.Sprintf("/echo/%d?i=%d&x=%%2F", i, i) || e.Host != "svc.example:8080" || e.Body != body || e.ContentLength != int64(len(body)) {
				t.Errorf("%d: upstream got %+v", i, e)
			}
			if !reflect.DeepEqual(e.Header, want) {
				t.Errorf("%d: upstream got header\n%v\nwant\n%v", i, e.Header, want)
			}
			// Response: exactly the upstream's (its server's one Date; no sniffed type).
			if _, ok := res.Header["Content-Type"]; ok || len(res.Header["Date"]) != 1 || res.Header.Get("Content-Length") != fmt.Sprint(len(b)) {
				t.Errorf("%d: response header %v", i, res.Header)
			}
			if got := res.Trailer.Get("X-Trailer"); got != fmt.Sprintf("done %d", i) {
				t.Errorf("%d: trailer %q (%v)", i, got, res.Trailer)
			}
		})
	}
	wg.Wait()
	if d, o, l := clientDials.Load(), orig.accepted.Load(), local.accepted.Load(); d != 1 || o != 1 || l != 1 {
		t.Errorf("connections: client %d, original %d, local %d; want one each", d, o, l)
	}
}

// grpcServers: the session's local app serves a bidi echo; the original server serves a
// server-streaming count and answers unknown methods trailers-only.
func grpcHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/grpc" || r.Header.Get("Te") != "trailers" {
			w.WriteHeader(400)
			return
		}
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("X-Server", name)
		switch r.URL.Path {
		case "/echo.Echo/Bidi":
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			for {
				msg, err := readMsg(r.Body)
				if err == io.EOF {
					break
				}
				if err != nil {
					panic(http.ErrAbortHandler)
				}
				writeMsg(w, bytes.ToUpper(msg))
				w.(http.Flusher).Flush()
			}
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
			w.Header().Set(http.TrailerPrefix+"Grpc-Message", "bidi from "+name)
		case "/echo.Echo/Count":
			msg, err := readMsg(r.Body)
			if err != nil {
				panic(http.ErrAbortHandler)
			}
			var n int
			fmt.Sscan(string(msg), &n)
			w.WriteHeader(200)
			for i := range n {
				writeMsg(w, fmt.Appendf(nil, "%d from %s", i, name))
				w.(http.Flusher).Flush()
			}
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		default: // trailers-only: one HEADERS frame with END_STREAM
			w.Header().Set("Grpc-Status", "12")
			w.Header().Set("Grpc-Message", "unknown method "+r.URL.Path)
			w.Header()["Content-Length"] = nil
			w.WriteHeader(200)
		}
	})
}

func TestGRPCStreamingRoutedPerStream(t *testing.T) {
	orig := startH2C(t, "original", grpcHandler("original"))
	local := startH2C(t, "local", grpcHandler("local"))
	localUp := &tcpUpstream{key: "session-alice", addr: local.addr}
	pool := newPool(t)
	addr, _, _ := startProxy(t, pool, routeUser("alice", localUp), &tcpUpstream{key: "original", addr: orig.addr}, Options{})
	client, clientDials := h2cClient(t, addr)

	bidi := func(user, wantServer string) {
		pr, pw := io.Pipe()
		res, err := client.RoundTrip(grpcRequest(t, "/echo.Echo/Bidi", user, pr))
		if err != nil {
			t.Errorf("bidi %s: %v", user, err)
			return
		}
		defer res.Body.Close()
		if res.Header.Get("X-Server") != wantServer {
			t.Errorf("bidi %s: served by %q", user, res.Header.Get("X-Server"))
		}
		// Ping-pong: each reply must arrive before the next message is sent.
		for i := range 5 {
			msg := fmt.Sprintf("hello %d from %s", i, user)
			if err := writeMsg(pw, []byte(msg)); err != nil {
				t.Errorf("bidi %s: write: %v", user, err)
				return
			}
			got, err := readMsg(res.Body)
			if err != nil || string(got) != strings.ToUpper(msg) {
				t.Errorf("bidi %s: got %q, %v", user, got, err)
				return
			}
		}
		pw.Close()
		if rest, err := io.ReadAll(res.Body); err != nil || len(rest) != 0 {
			t.Errorf("bidi %s: after close: %q, %v", user, rest, err)
		}
		if res.Trailer.Get("Grpc-Status") != "0" || res.Trailer.Get("Grpc-Message") != "bidi from "+wantServer {
			t.Errorf("bidi %s: trailers %v", user, res.Trailer)
		}
	}
	count := func() {
		var req bytes.Buffer
		writeMsg(&req, []byte("4"))
		res, err := client.RoundTrip(grpcRequest(t, "/echo.Echo/Count", "", &req))
		if err != nil {
			t.Errorf("count: %v", err)
			return
		}
		defer res.Body.Close()
		for i := range 4 {
			got, err := readMsg(res.Body)
			if want := fmt.Sprintf("%d from original", i); err != nil || string(got) != want {
				t.Errorf("count: got %q, %v; want %q", got, err, want)
			}
		}
		if _, err := readMsg(res.Body); err != io.EOF {
			t.Errorf("count: after the last message: %v", err)
		}
		if res.Trailer.Get("Grpc-Status") != "0" {
			t.Errorf("count: trailers %v", res.Trailer)
		}
	}
	trailersOnly := func(user string) {
		var req bytes.Buffer
		writeMsg(&req, []byte("x"))
		res, err := client.RoundTrip(grpcRequest(t, "/echo.Echo/Nope", user, &req))
		if err != nil {
			t.Errorf("trailers-only: %v", err)
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		// The transport reports ContentLength 0 without a content-length header only when the
		// HEADERS frame ended the stream: the trailers-only shape survived the proxy.
		if res.StatusCode != 200 || res.Header.Get("Grpc-Status") != "12" || res.Header.Get("Grpc-Message") != "unknown method /echo.Echo/Nope" ||
			res.ContentLength != 0 || res.Header["Content-Length"] != nil || len(b) != 0 || len(res.Trailer) != 0 {
			t.Errorf("trailers-only %s: %d %v, ContentLength %d, body %q, trailer %v", user, res.StatusCode, res.Header, res.ContentLength, b, res.Trailer)
		}
	}

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { bidi("alice", "local") })
		wg.Go(func() { bidi("bob", "original") })
		wg.Go(count)
		wg.Go(func() { trailersOnly("alice") })
		wg.Go(func() { trailersOnly("") })
	}
	wg.Wait()
	if d, o, l := clientDials.Load(), orig.accepted.Load(), local.accepted.Load(); d != 1 || o != 1 || l != 1 {
		t.Errorf("connections: client %d, original %d, local %d; want one each", d, o, l)
	}
}

// A stream whose upstream can't be dialled is answered 502; another stream on the same client
// connection, in flight meanwhile, completes.
func TestDialFailureIs502ForThatStreamOnly(t *testing.T) {
	release := make(chan struct{})
	orig := startH2C(t, "original", echoHandler("original", func() { <-release }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close() // nothing listens there now
	dead := &tcpUpstream{key: "session-bob", addr: deadAddr}
	pool := newPool(t)
	addr, _, _ := startProxy(t, pool, routeUser("bob", dead), &tcpUpstream{key: "original", addr: orig.addr}, Options{})
	client, clientDials := h2cClient(t, addr)

	okDone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://svc/slow?i=1", nil)
		res, err := client.RoundTrip(req)
		if err == nil {
			defer res.Body.Close()
			var e echo
			if err = json.NewDecoder(res.Body).Decode(&e); err == nil && (res.StatusCode != 200 || e.Server != "original") {
				err = fmt.Errorf("status %d from %q", res.StatusCode, e.Server)
			}
		}
		okDone <- err
	}()
	for orig.accepted.Load() == 0 { // the slow stream is in flight
		time.Sleep(5 * time.Millisecond)
	}

	for range 2 { // a failed dial is not remembered: each stream tries
		req, _ := http.NewRequest("GET", "http://svc/", nil)
		req.Header.Set("X-User", "bob")
		res, err := client.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadGateway {
			t.Errorf("status %d, want 502", res.StatusCode)
		}
	}
	if n := dead.dials.Load(); n != 2 {
		t.Errorf("%d dials of the dead upstream, want 2", n)
	}
	// gRPC: the same 502 (grpc clients map it to UNAVAILABLE).
	var body bytes.Buffer
	writeMsg(&body, []byte("x"))
	greq := grpcRequest(t, "/echo.Echo/Bidi", "bob", &body)
	greq.URL.Host = "svc" // the client's pool is per host: keep to one client connection
	res, err := client.RoundTrip(greq)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("grpc: status %d, want 502", res.StatusCode)
	}

	close(release)
	if err := <-okDone; err != nil {
		t.Errorf("the other stream: %v", err)
	}
	if d := clientDials.Load(); d != 1 {
		t.Errorf("client dialled %d times, want 1", d)
	}
}

// Forgetting a session's upstream closes its connection, even with a stream in flight; the
// client connection goes on, and a later match dials anew.
func TestForgetClosesSessionConnection(t *testing.T) {
	orig := startH2C(t, "original", echoHandler("original", nil))
	local := startH2C(t, "local", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.WriteHeader(200)
			w.Write([]byte("first"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		echoHandler("local", nil).ServeHTTP(w, r)
	}))
	localUp := &tcpUpstream{key: "session-alice", addr: local.addr}
	pool := newPool(t)
	addr, _, _ := startProxy(t, pool, routeUser("alice", localUp), &tcpUpstream{key: "original", addr: orig.addr}, Options{})
	client, clientDials := h2cClient(t, addr)

	get := func(path, user string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "http://svc"+path, nil)
		if user != "" {
			req.Header.Set("X-User", user)
		}
		return client.RoundTrip(req)
	}
	stream, err := get("/stream", "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(stream.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("stream: %q, %v", buf, err)
	}
	res, err := get("/x", "alice")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if n := local.accepted.Load(); n != 1 {
		t.Fatalf("local accepted %d connections, want 1 (streams multiplexed)", n)
	}

	pool.Forget("session-alice")
	select {
	case <-local.connDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the session's upstream connection is still open after Forget")
	}
	if _, err := io.ReadAll(stream.Body); err == nil {
		t.Error("the stream in flight to the forgotten upstream ended cleanly; want a reset")
	}

	for _, user := range []string{"", "alice"} {
		res, err := get("/after", user)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("after Forget, user %q: status %d", user, res.StatusCode)
		}
	}
	if n := local.accepted.Load(); n != 2 {
		t.Errorf("local accepted %d connections, want 2 (a new one after Forget)", n)
	}
	if d := clientDials.Load(); d != 1 {
		t.Errorf("client dialled %d times, want 1", d)
	}

	pool.Close()
	res, err = get("/closed", "")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("after Pool.Close: status %d, want 502", res.StatusCode)
	}
}

func TestFilterFields(t *testing.T) {
	type fields struct {
		method, path, query string
		header              [][2]string
	}
	got := make(chan fields, 1)
	orig := startH2C(t, "original", echoHandler("original", nil))
	route := func(r *http.Request) Upstream {
		var f fields
		f.method, f.path, f.query, f.header = FilterFields(r)
		got <- f
		return nil
	}
	addr, _, _ := startProxy(t, newPool(t), route, &tcpUpstream{key: "original", addr: orig.addr}, Options{})
	client, _ := h2cClient(t, addr)
	req, _ := http.NewRequest("PATCH", "http://api.example/a%2Fb/c?x=1&y", nil)
	req.Header.Set("X-User", "alice")
	req.Header.Add("Accept", "text/plain")
	req.Header.Add("Accept", "application/json")
	req.Header.Set("User-Agent", "ua")
	req.Header["Accept-Encoding"] = nil
	res, err := client.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	want := fields{"PATCH", "/a%2Fb/c", "x=1&y", [][2]string{
		{"host", "api.example"},
		{"accept", "text/plain"}, {"accept", "application/json"},
		{"accept-encoding", "gzip"}, // the client transport's own
		{"content-length", "0"},     // the client transport's own, for a PATCH
		{"user-agent", "ua"},
		{"x-user", "alice"},
	}}
	if f := <-got; !reflect.DeepEqual(f, want) {
		t.Errorf("FilterFields:\n%+v\nwant\n%+v", f, want)
	}
}

// rawClient speaks HTTP/2 frames to the proxy directly.
func rawClient(t *testing.T, addr string) (net.Conn, *http2.Framer) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c, fr
}

func TestLimits(t *testing.T) {
	orig := startH2C(t, "original", echoHandler("original", nil))
	addr, _, _ := startProxy(t, newPool(t), nil, &tcpUpstream{key: "original", addr: orig.addr}, Options{
		MaxConcurrentStreams: 7,
		MaxHeaderBytes:       4096,
		ReadHeaderTimeout:    300 * time.Millisecond,
	})

	headers := func(fr *http2.Framer, id uint32, extra ...string) {
		t.Helper()
		var enc bytes.Buffer
		he := hpack.NewEncoder(&enc)
		fields := append([]string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "svc"}, extra...)
		for i := 0; i < len(fields); i += 2 {
			he.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	// status reads frames until stream id's response headers or a GOAWAY.
	status := func(fr *http2.Framer, id uint32) (string, *http2.GoAwayFrame) {
		t.Helper()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("reading: %v", err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if f.IsAck() {
					continue
				}
				if v, _ := f.Value(http2.SettingMaxConcurrentStreams); v != 7 {
					t.Errorf("max concurrent streams %d, want 7", v)
				}
				if v, _ := f.Value(http2.SettingMaxHeaderListSize); v < 4096 || v > 8000 {
					t.Errorf("max header list size %d, want about 4096", v)
				}
			case *http2.MetaHeadersFrame:
				if f.StreamID == id {
					return f.PseudoValue("status"), nil
				}
			case *http2.GoAwayFrame:
				return "", f
			}
		}
	}

	t.Run("header list too large", func(t *testing.T) {
		_, fr := rawClient(t, addr)
		var extra []string
		for i := range 8 {
			extra = append(extra, fmt.Sprintf("x-big-%d", i), strings.Repeat("a", 700))
		}
		headers(fr, 1, extra...)
		if st, ga := status(fr, 1); st != "431" {
			t.Errorf("status %q (GOAWAY %v), want 431", st, ga)
		}
		headers(fr, 3) // the connection goes on
		if st, ga := status(fr, 3); st != "200" {
			t.Errorf("next stream: status %q (GOAWAY %v), want 200", st, ga)
		}
	})

	t.Run("header field larger than the limit", func(t *testing.T) {
		_, fr := rawClient(t, addr)
		headers(fr, 1, "x-huge", strings.Repeat("a", 8000))
		if st, ga := status(fr, 1); ga == nil {
			t.Errorf("status %q, want a GOAWAY", st)
		}
	})

	t.Run("streams beyond the limit are refused", func(t *testing.T) {
		// x/net's own accounting; here only to see that the limit is in force.
		release := make(chan struct{})
		slow := startH2C(t, "slow", echoHandler("slow", func() { <-release }))
		addr, _, _ := startProxy(t, newPool(t), nil, &tcpUpstream{key: "slow", addr: slow.addr}, Options{MaxConcurrentStreams: 7})
		_, fr := rawClient(t, addr)
		for i := range 9 {
			headers(fr, uint32(2*i+1))
		}
		var ok, refused int
		for ok+refused < 9 {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				refused++
				if refused == 2 {
					close(release)
				}
			case *http2.MetaHeadersFrame:
				if f.PseudoValue("status") == "200" {
					ok++
				}
			}
		}
		if ok != 7 || refused != 2 {
			t.Errorf("%d answered, %d refused; want 7 and 2", ok, refused)
		}
	})

	t.Run("read header timeout", func(t *testing.T) {
		_, fr := rawClient(t, addr) // its own deadline is 10 s
		start := time.Now()
		var err error
		for err == nil {
			_, err = fr.ReadFrame()
		}
		if el := time.Since(start); el < 200*time.Millisecond || el > 5*time.Second {
			t.Errorf("connection without a request closed after %v (%v), want about 300ms", el, err)
		}
	})

	t.Run("a request in time clears the deadline", func(t *testing.T) {
		client, _ := h2cClient(t, addr)
		for range 2 {
			req, _ := http.NewRequest("GET", "http://svc/", nil)
			res, err := client.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			time.Sleep(400 * time.Millisecond) // longer than ReadHeaderTimeout
		}
	})
}

// Cancelling Serve's context sends GOAWAY; a stream in flight may finish within the grace.
func TestShutdownGrace(t *testing.T) {
	release := make(chan struct{})
	orig := startH2C(t, "original", echoHandler("original", func() { <-release }))
	addr, cancel, errs := startProxy(t, newPool(t), nil, &tcpUpstream{key: "original", addr: orig.addr}, Options{ShutdownGrace: 5 * time.Second})
	_, fr := rawClient(t, addr)
	var enc bytes.Buffer
	he := hpack.NewEncoder(&enc)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/?i=7"}, {":authority", "svc"}} {
		he.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for orig.accepted.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	var goaway, status, trailer bool
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break // closed after the stream ended
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			goaway = true
			if f.ErrCode != http2.ErrCodeNo {
				t.Errorf("GOAWAY %v", f.ErrCode)
			}
			close(release)
		case *http2.MetaHeadersFrame:
			if f.PseudoValue("status") == "200" {
				status = true
			} else if f.StreamEnded() && !status {
				t.Errorf("headers %v", f.Fields)
			} else if f.StreamEnded() {
				trailer = true
			}
		}
	}
	if !goaway || !status || !trailer {
		t.Errorf("goaway %v, response %v, trailer %v", goaway, status, trailer)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Serve did not return")
	}
}

// Declared request trailers reach the upstream; a 103 informational response reaches the
// client before the final one.
func TestRequestTrailersAndInformational(t *testing.T) {
	orig := startH2C(t, "original", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		body, _ := io.ReadAll(r.Body)
		w.Header().Del("Link")
		fmt.Fprintf(w, "%s|%s", body, r.Trailer.Get("X-Checksum"))
	}))
	addr, _, _ := startProxy(t, newPool(t), nil, &tcpUpstream{key: "original", addr: orig.addr}, Options{})
	client, _ := h2cClient(t, addr)

	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://svc/upload", pr)
	req.Trailer = http.Header{"X-Checksum": nil}
	var hints []string
	req = req.WithContext(httptraceWith1xx(func(code int, h map[string][]string) {
		hints = append(hints, fmt.Sprint(code, " ", h["Link"]))
	}))
	go func() {
		io.WriteString(pw, "payload")
		req.Trailer.Set("X-Checksum", "abc123")
		pw.Close()
	}()
	res, err := client.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if string(b) != "payload|abc123" || res.StatusCode != 200 {
		t.Errorf("got %d %q, want payload|abc123", res.StatusCode, b)
	}
	if len(hints) != 1 || hints[0] != "103 [</style.css>; rel=preload]" {
		t.Errorf("informational responses %q", hints)
	}
	if res.Header.Get("Link") != "" {
		t.Errorf("the 103's header leaked into the final response: %v", res.Header)
	}
}

func httptraceWith1xx(f func(int, map[string][]string)) context.Context {
	return httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error { f(code, h); return nil },
	})
}

// A client that resets its stream cancels the upstream stream.
func TestClientResetCancelsUpstream(t *testing.T) {
	cancelled := make(chan struct{})
	orig := startH2C(t, "original", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(cancelled)
	}))
	addr, _, _ := startProxy(t, newPool(t), nil, &tcpUpstream{key: "original", addr: orig.addr}, Options{})
	client, _ := h2cClient(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc/watch", nil)
	res, err := client.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	cancel()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream stream was not cancelled")
	}
}

// A CONNECT tunnel is refused, not proxied: the original server never sees it.
func TestConnectRefused(t *testing.T) {
	orig := startH2C(t, "original", echoHandler("original", nil))
	addr, _, _ := startProxy(t, newPool(t), nil, &tcpUpstream{key: "original", addr: orig.addr}, Options{})
	client, _ := h2cClient(t, addr)
	pr, pw := io.Pipe()
	defer pw.Close()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Host: "db.example:5432"}, Host: "db.example:5432",
		Header: http.Header{}, Body: pr}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := client.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotImplemented {
		t.Errorf("CONNECT: status %d, want 501", res.StatusCode)
	}
	if n := orig.accepted.Load(); n != 0 {
		t.Errorf("the original server got %d connections, want none", n)
	}
}

// goneUpstream is a session that ended after the route picked it.
type goneUpstream struct {
	tcpUpstream
	live bool
}

func (u *goneUpstream) Live() bool { return u.live }
func (u *goneUpstream) Dial(context.Context) (net.Conn, error) {
	u.dials.Add(1)
	return nil, fmt.Errorf("session away: %w", ErrUseOriginal)
}

// A request routed to a session that is gone goes to the original server, not a 502; and the
// Pool makes no entry for a session that ended (ForgetPrefix has run: nobody would forget it).
func TestGoneUpstreamGoesToOriginal(t *testing.T) {
	orig := startH2C(t, "original", echoHandler("original", nil))
	for _, live := range []bool{true, false} {
		gone := &goneUpstream{tcpUpstream: tcpUpstream{key: "session bob 10.0.0.1:80"}, live: live}
		pool := newPool(t)
		addr, _, _ := startProxy(t, pool, routeUser("bob", gone), &tcpUpstream{key: "original", addr: orig.addr}, Options{})
		client, _ := h2cClient(t, addr)
		pool.ForgetPrefix("session bob ")
		req, _ := http.NewRequest("GET", "http://svc/", nil)
		req.Header.Set("X-User", "bob")
		res, err := client.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		var e echo
		json.NewDecoder(res.Body).Decode(&e)
		res.Body.Close()
		if res.StatusCode != 200 || e.Server != "original" {
			t.Errorf("live %v: status %d from %q, want 200 from the original", live, res.StatusCode, e.Server)
		}
		pool.mu.Lock()
		_, made := pool.ents[gone.key]
		pool.mu.Unlock()
		if want := live; made != want || (gone.dials.Load() == 1) != want {
			t.Errorf("live %v: entry made %v after %d dials", live, made, gone.dials.Load())
		}
	}
}

// pipeUpstream hands the test the server end of each connection dialled.
type pipeUpstream struct{ conns chan net.Conn }

func (u *pipeUpstream) Key() string { return "pipe" }
func (u *pipeUpstream) Dial(context.Context) (net.Conn, error) {
	a, b := net.Pipe()
	u.conns <- b
	return a, nil
}

// A 1xx the transport delivers after the client reset its stream and the handler returned
// is dropped: writing it would panic on the transport's read loop. The upstream here stops
// reading, so that the transport, blocked sending its RST_STREAM, still knows the stream.
func TestInformationalAfterHandlerReturned(t *testing.T) {
	up := &pipeUpstream{conns: make(chan net.Conn, 1)}
	p := &proxy{pool: newPool(t), original: up, log: slog.New(slog.DiscardHandler), onRequest: func() {}}
	handled := make(chan struct{})
	late := make(chan int, 1)
	front := startH2C(t, "front", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Composed after the proxy's own hook: it runs once that one has returned.
		r = r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
			Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { late <- code; return nil },
		}))
		p.ServeHTTP(w, r)
		close(handled)
	}))
	client, _ := h2cClient(t, front.addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc/", nil)
		if res, err := client.RoundTrip(req); err == nil {
			res.Body.Close()
		}
	}()

	srv := <-up.conns
	defer srv.Close()
	srv.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(srv, make([]byte, len(http2.ClientPreface))); err != nil {
		t.Fatal(err)
	}
	wfr := http2.NewFramer(srv, nil)
	settings := make(chan error, 1)
	go func() { settings <- wfr.WriteSettings() }()
	rfr := http2.NewFramer(nil, srv)
	for headers, ack := false, false; !headers || !ack; {
		f, err := rfr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			headers = true
		case *http2.SettingsFrame:
			ack = ack || f.IsAck()
		}
	}
	cancel()
	select {
	case <-handled:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not return")
	}
	time.Sleep(50 * time.Millisecond) // net/http finishes the stream's writer

	if err := <-settings; err != nil {
		t.Fatal(err)
	}
	var enc bytes.Buffer
	he := hpack.NewEncoder(&enc)
	he.WriteField(hpack.HeaderField{Name: ":status", Value: "103"})
	he.WriteField(hpack.HeaderField{Name: "link", Value: "</a.css>; rel=preload"})
	if err := wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-late:
		if code != 103 {
			t.Errorf("late informational response %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the late 103 was not delivered to the trace")
	}
}
