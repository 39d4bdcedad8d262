package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// echo answers with who answered, the method, the target and the body,
// and echoes a trailer X-Sum as X-Echo.
func echo(who string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/chunked" {
			w.Header().Set("Trailer", "X-Echo")
			fmt.Fprintf(w, "%s %s %s ", who, r.Method, r.RequestURI)
			w.(http.Flusher).Flush()
			w.Write(body)
			w.Header().Set("X-Echo", r.Trailer.Get("X-Sum"))
			return
		}
		fmt.Fprintf(w, "%s %s %s %s", who, r.Method, r.RequestURI, body)
	}
}

// TestServeMixed: matched and unmatched requests on one kept-alive client
// connection. The unmatched ones share one connection to the original
// server, each matched one gets its own; every server reads exactly the
// bytes the client sent it, and the client reads exactly what they wrote.
func TestServeMixed(t *testing.T) {
	orig, origRec := httpServer(t, "orig", echo("orig"))
	local, localRec := httpServer(t, "local", echo("local"))
	addr, errs := serveAll(t, routeByFilter(t, localRule, local), orig, Limits{})

	reqs := []struct {
		raw, method, body string
		local             bool
	}{
		{"GET /a?q=1 HTTP/1.1\r\nhOST: svc\r\nx-odd-CASE:  v \r\nAccept: */*\r\nX-Route: locally\r\n\r\n", "GET", "orig GET /a?q=1 ", false},
		{"POST /local/x HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nX-Custom: 1\r\n\r\nhello", "POST", "local POST /local/x hello", true},
		{"POST /chunked HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;ext=\"1\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n", "POST", "orig POST /chunked hello world", false},
		{"GET /b HTTP/1.1\r\nHost: svc\r\nx-route: LOCAL\r\n\r\n", "GET", "local GET /b ", true},
		{"DELETE /c HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\n\r\n", "DELETE", "orig DELETE /c ", false},
		{"POST /local/chunked HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "POST", "local POST /local/chunked abc", true},
	}
	c := dialClient(t, addr)
	var wantOrig, wantLocal []string
	origSent, localSent := 0, 0
	for i, r := range reqs {
		c.send(r.raw)
		resp, body, raw := c.response(r.method)
		if body != r.body {
			t.Fatalf("request %d: body %q, want %q", i, body, r.body)
		}
		if i == 2 && resp.Trailer.Get("X-Echo") != "42" {
			t.Fatalf("trailer lost: %v", resp.Trailer)
		}
		// The response on the wire is what the server wrote, to the byte.
		var sent string
		if r.local {
			wantLocal = append(wantLocal, r.raw)
			s := localRec.sent()
			sent, localSent = s[localSent:], len(s)
		} else {
			if len(wantOrig) == 0 {
				wantOrig = append(wantOrig, "")
			}
			wantOrig[0] += r.raw
			s := origRec.sent()
			sent, origSent = s[origSent:], len(s)
		}
		if raw != sent {
			t.Fatalf("request %d: client read\n%q\nserver wrote\n%q", i, raw, sent)
		}
	}
	c.conn.Close()
	if err := <-errs; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	assertReceived(t, "original", origRec, wantOrig)
	assertReceived(t, "local", localRec, wantLocal)
}

func assertReceived(t *testing.T, name string, rec *recorder, want []string) {
	t.Helper()
	// A server may still be reading what it was sent.
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := rec.received()
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s server received, by connection:\n%q\nwant\n%q", name, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServePipelined: requests sent in one write get their responses in
// order, each routed on its own.
func TestServePipelined(t *testing.T) {
	orig, origRec := httpServer(t, "orig", echo("orig"))
	local, localRec := httpServer(t, "local", echo("local"))
	addr, _ := serveAll(t, routeByFilter(t, localRule, local), orig, Limits{})

	r1 := "GET /1 HTTP/1.1\r\nHost: s\r\n\r\n"
	r2 := "PUT /local/2 HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\n\r\ntwo"
	r3 := "POST /3 HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nthree\r\n0\r\n\r\n"
	r4 := "GET /4 HTTP/1.1\r\nHost: s\r\nX-Route: local\r\n\r\n"
	r5 := "HEAD /5 HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n"
	c := dialClient(t, addr)
	c.send(r1 + r2 + r3 + r4 + r5)
	for _, want := range []string{"orig GET /1 ", "local PUT /local/2 two", "orig POST /3 three", "local GET /4 ", ""} {
		method := "GET"
		if want == "" {
			method = "HEAD"
		}
		if _, body, _ := c.response(method); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
	if rest := c.rest(); rest != "" {
		t.Fatalf("after Connection: close: %q", rest)
	}
	assertReceived(t, "original", origRec, []string{r1 + r3 + r5})
	assertReceived(t, "local", localRec, []string{r2, r4})
}

// TestServeExpectContinue: the 100 comes back before the client sends the
// body, on either route.
func TestServeExpectContinue(t *testing.T) {
	orig, _ := httpServer(t, "orig", echo("orig"))
	local, _ := httpServer(t, "local", echo("local"))
	addr, _ := serveAll(t, routeByFilter(t, localRule, local), orig, Limits{})
	c := dialClient(t, addr)
	for _, tc := range []struct{ path, want string }{{"/local/up", "local PUT /local/up hello"}, {"/up", "orig PUT /up hello"}} {
		c.send("PUT " + tc.path + " HTTP/1.1\r\nHost: s\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		if resp, _, _ := c.response("PUT"); resp.StatusCode != 100 {
			t.Fatalf("interim status %d", resp.StatusCode)
		}
		c.send("hello")
		if resp, body, _ := c.response("PUT"); resp.StatusCode != 200 || body != tc.want {
			t.Fatalf("final %d %q", resp.StatusCode, body)
		}
	}
}

// TestServeExpectRefused: a final response without a 100 to an Expect
// request whose body never comes: the client gets it and the connection
// closes, since where the next request starts is unknown.
func TestServeExpectRefused(t *testing.T) {
	orig, _ := rawServer(t, func(n int, conn net.Conn, br *bufio.Reader) {
		readHead(br)
		io.WriteString(conn, "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
		io.Copy(io.Discard, br)
	})
	addr, _ := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{})
	c := dialClient(t, addr)
	c.send("PUT /up HTTP/1.1\r\nHost: s\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	if resp, _, _ := c.response("PUT"); resp.StatusCode != 417 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if rest := c.rest(); rest != "" {
		t.Fatalf("after the 417: %q", rest)
	}
}

// upgrader answers an upgrade with 101, then echoes in upper case.
func upgrader(n int, conn net.Conn, br *bufio.Reader) {
	if _, err := readHead(br); err != nil {
		return
	}
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
	buf := make([]byte, 512)
	for {
		n, err := br.Read(buf)
		conn.Write(bytes.ToUpper(buf[:n]))
		if err != nil {
			return
		}
	}
}

// TestServeUpgrade: after a 101 the connection is a raw tunnel to the
// upstream of the request that upgraded, bytes sent right behind the
// request included.
func TestServeUpgrade(t *testing.T) {
	for _, routed := range []bool{false, true} {
		t.Run(fmt.Sprint("routed=", routed), func(t *testing.T) {
			orig, origRec := rawServer(t, upgrader)
			local, localRec := rawServer(t, upgrader)
			addr, errs := serveAll(t, routeByFilter(t, localRule, local), orig, Limits{})
			path := "/ws"
			if routed {
				path = "/local/ws"
			}
			head := "GET " + path + " HTTP/1.1\r\nHost: s\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n"
			c := dialClient(t, addr)
			c.send(head + "early ")
			if resp, _, _ := c.response("GET"); resp.StatusCode != 101 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			c.send("and late")
			got := make([]byte, len("EARLY AND LATE"))
			if _, err := io.ReadFull(c.br, got); err != nil || string(got) != "EARLY AND LATE" {
				t.Fatalf("tunnel: %q, %v", got, err)
			}
			c.conn.(*net.TCPConn).CloseWrite()
			if rest := c.rest(); rest != "" {
				t.Fatalf("after the tunnel: %q", rest)
			}
			if err := <-errs; err != nil {
				t.Fatalf("Serve: %v", err)
			}
			used, unused := origRec, localRec
			if routed {
				used, unused = localRec, origRec
			}
			assertReceived(t, "upgrading", used, []string{head + "early and late"})
			assertReceived(t, "other", unused, nil)
		})
	}
}

// TestServeHTTP10: without keep-alive the connection closes after the
// response; with it, it stays.
func TestServeHTTP10(t *testing.T) {
	orig, _ := httpServer(t, "orig", echo("orig"))
	addr, _ := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{})
	c := dialClient(t, addr)
	c.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if _, body, _ := c.response("GET"); body != "orig GET /a " {
		t.Fatalf("body %q", body)
	}
	c.send("GET /b HTTP/1.0\r\n\r\n")
	if _, body, _ := c.response("GET"); body != "orig GET /b " {
		t.Fatalf("body %q", body)
	}
	if rest := c.rest(); rest != "" {
		t.Fatalf("after an HTTP/1.0 response: %q", rest)
	}
}

// TestServeNoBody: HEAD, 204 and 304 responses carry no body whatever
// their fields say; the next response is read where it starts.
func TestServeNoBody(t *testing.T) {
	orig, _ := rawServer(t, func(n int, conn net.Conn, br *bufio.Reader) {
		for {
			head, err := readHead(br)
			if err != nil {
				return
			}
			switch {
			case strings.HasPrefix(head, "HEAD"):
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
			case strings.HasPrefix(head, "GET /204"):
				io.WriteString(conn, "HTTP/1.1 204 No Content\r\nContent-Length: 1000\r\n\r\n")
			case strings.HasPrefix(head, "GET /304"):
				io.WriteString(conn, "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n")
			default:
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast")
			}
		}
	})
	addr, _ := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{})
	c := dialClient(t, addr)
	c.send("HEAD / HTTP/1.1\r\nHost: s\r\n\r\nGET /204 HTTP/1.1\r\nHost: s\r\n\r\nGET /304 HTTP/1.1\r\nHost: s\r\n\r\nGET / HTTP/1.1\r\nHost: s\r\n\r\n")
	for _, want := range []int{200, 204, 304} {
		method := "GET"
		if want == 200 {
			method = "HEAD"
		}
		if resp, _, _ := c.response(method); resp.StatusCode != want {
			t.Fatalf("status %d, want %d", resp.StatusCode, want)
		}
	}
	if _, body, _ := c.response("GET"); body != "last" {
		t.Fatalf("body %q", body)
	}
}

// TestServeCloseDelimited: a body without length runs to the server's
// close, and the client connection closes after it.
func TestServeCloseDelimited(t *testing.T) {
	const resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, part two"
	orig, _ := rawServer(t, func(n int, conn net.Conn, br *bufio.Reader) {
		readHead(br)
		io.WriteString(conn, resp)
	})
	addr, errs := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{})
	c := dialClient(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: s\r\n\r\nGET /never HTTP/1.1\r\nHost: s\r\n\r\n")
	if got := c.rest(); got != resp {
		t.Fatalf("got %q", got)
	}
	if err := <-errs; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestServeRefusals: a refused request gets its status and the
// connection closes; nothing of it reaches the original server, while
// the good request before it did.
func TestServeRefusals(t *testing.T) {
	const good = "GET /ok HTTP/1.1\r\nHost: h\r\n\r\n"
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"CL.TE", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE obfuscated", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", 400},
		{"TE space before colon", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
		{"CL differ", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 30\r\n\r\nx", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\nHost: h\n\n", 400},
		{"NUL", "GET / HTTP/1.1\r\nHost: h\x00\r\n\r\n", 400},
		{"gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"version", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505},
		{"too large", "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("a", 2000) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig, origRec := httpServer(t, "orig", echo("orig"))
			addr, errs := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{MaxHeaderBytes: 1024})
			c := dialClient(t, addr)
			c.send(good + tc.req)
			if _, body, _ := c.response("GET"); body != "orig GET /ok " {
				t.Fatalf("good request: %q", body)
			}
			resp, _, raw := c.response("GET")
			want := fmt.Sprintf("HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", tc.status, statusText(tc.status))
			if resp.StatusCode != tc.status || raw != want {
				t.Fatalf("refusal %q, want %q", raw, want)
			}
			if rest := c.rest(); rest != "" {
				t.Fatalf("after the refusal: %q", rest)
			}
			var e *Error
			if err := <-errs; !errors.As(err, &e) || e.Status != tc.status {
				t.Fatalf("Serve: %v", err)
			}
			assertReceived(t, "original", origRec, []string{good})
		})
	}
}

// TestServeBadChunkedBody: the head went out before the body was found
// broken; the upstream gets the valid prefix only and the client a 400.
func TestServeBadChunkedBody(t *testing.T) {
	orig, origRec := rawServer(t, func(n int, conn net.Conn, br *bufio.Reader) {
		io.Copy(io.Discard, br)
	})
	addr, _ := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{})
	head := "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	c := dialClient(t, addr)
	c.send(head + "3\r\nabc\r\n0\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _, _ := c.response("POST"); resp.StatusCode != 400 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	assertReceived(t, "original", origRec, []string{head + "3\r\nabc\r\n"})
}

// TestServeSlowHead: a head sent byte by byte is cut off at HeadTimeout
// with a 408; an idle kept-alive connection closes at IdleTimeout.
func TestServeSlowHead(t *testing.T) {
	orig, origRec := httpServer(t, "orig", echo("orig"))
	lim := Limits{HeadTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}
	addr, _ := serveAll(t, func(*Request) Upstream { return nil }, orig, lim)

	c := dialClient(t, addr)
	start := time.Now()
	slow := c.conn
	go func() {
		for _, b := range []byte("GET / HTTP/1.1\r\nHost: h\r\nX: slow") {
			if _, err := slow.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(30 * time.Millisecond)
		}
	}()
	if resp, _, _ := c.response("GET"); resp.StatusCode != 408 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the slow head was cut off after %v", d)
	}

	c = dialClient(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	c.response("GET")
	start = time.Now()
	if rest := c.rest(); rest != "" {
		t.Fatalf("idle connection got %q", rest)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("idle connection closed after %v", d)
	}
	assertReceived(t, "original", origRec, []string{"GET / HTTP/1.1\r\nHost: h\r\n\r\n"})
}

// closedPort is a loopback address nobody listens on.
func closedPort(t *testing.T) tcpUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return tcpUpstream(addr)
}

// TestServeDialFailure: an upstream that can't be dialed is a 502.
func TestServeDialFailure(t *testing.T) {
	orig, _ := httpServer(t, "orig", echo("orig"))
	for _, tc := range []struct {
		name     string
		original Upstream
		path     string
	}{{"original", closedPort(t), "/"}, {"routed", orig, "/local"}} {
		t.Run(tc.name, func(t *testing.T) {
			addr, errs := serveAll(t, routeByFilter(t, localRule, closedPort(t)), tc.original, Limits{})
			c := dialClient(t, addr)
			c.send("GET " + tc.path + " HTTP/1.1\r\nHost: h\r\n\r\n")
			if resp, _, _ := c.response("GET"); resp.StatusCode != 502 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if rest := c.rest(); rest != "" {
				t.Fatalf("after the 502: %q", rest)
			}
			if err := <-errs; err == nil {
				t.Fatal("Serve returned nil")
			}
		})
	}
}

// counted answers each request with "c<connection number>", keeping the
// connection open, except that connection 0 behaves as first says.
func counted(first func(conn net.Conn, br *bufio.Reader)) func(int, net.Conn, *bufio.Reader) {
	return func(n int, conn net.Conn, br *bufio.Reader) {
		if n == 0 {
			first(conn, br)
			return
		}
		for {
			if _, err := readHead(br); err != nil {
				return
			}
			fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nc%d", n)
		}
	}
}

// TestServeRedial: the kept connection to the original server is dialed
// again when the server closed it while idle, and a safe request the
// server dropped unanswered is sent again once.
func TestServeRedial(t *testing.T) {
	answerOnce := func(conn net.Conn, br *bufio.Reader) {
		readHead(br)
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nc0")
	}
	t.Run("closed while idle", func(t *testing.T) {
		orig, _ := rawServer(t, counted(answerOnce))
		addr, _ := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{})
		c := dialClient(t, addr)
		for _, want := range []string{"c0", "c1"} {
			c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
			if _, body, _ := c.response("GET"); body != want {
				t.Fatalf("body %q, want %q", body, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	dropSecond := func(conn net.Conn, br *bufio.Reader) {
		answerOnce(conn, br)
		readHead(br)
	}
	t.Run("dropped unanswered", func(t *testing.T) {
		orig, origRec := rawServer(t, counted(dropSecond))
		addr, _ := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{})
		c := dialClient(t, addr)
		const req = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
		c.send(req)
		c.response("GET")
		c.send(req)
		if _, body, _ := c.response("GET"); body != "c1" {
			t.Fatalf("body %q", body)
		}
		assertReceived(t, "original", origRec, []string{req + req, req})
	})
	t.Run("POST not sent again", func(t *testing.T) {
		orig, _ := rawServer(t, counted(dropSecond))
		addr, _ := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{})
		c := dialClient(t, addr)
		c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		c.response("GET")
		c.send("POST / HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp, _, _ := c.response("POST"); resp.StatusCode != 502 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

// TestServeEarlyResponse: a server that answers before reading the body
// and closes; the client gets the answer, then the connection closes.
func TestServeEarlyResponse(t *testing.T) {
	orig, _ := rawServer(t, func(n int, conn net.Conn, br *bufio.Reader) {
		readHead(br)
		io.WriteString(conn, "HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	})
	addr, errs := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{})
	c := dialClient(t, addr)
	c.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\nsome")
	if resp, _, _ := c.response("POST"); resp.StatusCode != 413 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if rest := c.rest(); rest != "" {
		t.Fatalf("after the 413: %q", rest)
	}
	if err := <-errs; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestServeEarlyResponseUnread: a server that answers before reading the
// body, then neither reads nor closes, while the client goes on sending:
// the client gets the answer, and the agent lets go of both connections
// once it stops waiting for the body (IdleTimeout) rather than stay
// blocked writing to the server.
func TestServeEarlyResponseUnread(t *testing.T) {
	release := make(chan struct{})
	orig, _ := rawServer(t, func(n int, conn net.Conn, br *bufio.Reader) {
		readHead(br)
		io.WriteString(conn, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
		<-release
	})
	t.Cleanup(func() { close(release) })
	addr, errs := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{IdleTimeout: 300 * time.Millisecond})
	c := dialClient(t, addr)
	c.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1099511627776\r\n\r\n")
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := c.conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	if resp, _, _ := c.response("POST"); resp.StatusCode != 413 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	select {
	case err := <-errs:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still blocked on a server that stopped reading the body")
	}
}

// TestServeSlowBody: each wait for more of a request body is bounded by
// bodyTimeout; a client that stalls gets a 408, and both connections
// close. A slow body that keeps coming is not cut off.
func TestServeSlowBody(t *testing.T) {
	defer func(d time.Duration) { bodyTimeout = d }(bodyTimeout)
	bodyTimeout = 300 * time.Millisecond
	upClosed := make(chan struct{})
	orig, origRec := rawServer(t, func(n int, conn net.Conn, br *bufio.Reader) {
		readHead(br)
		if n == 0 {
			b := make([]byte, 5)
			io.ReadFull(br, b)
			fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n%s", b)
			return
		}
		io.Copy(io.Discard, br)
		close(upClosed)
	})
	addr, errs := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{})

	c := dialClient(t, addr)
	c.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n")
	for _, b := range "slow!" {
		time.Sleep(100 * time.Millisecond)
		c.send(string(b))
	}
	if _, body, _ := c.response("POST"); body != "slow!" {
		t.Fatalf("slow body: %q", body)
	}
	c.conn.Close()

	c = dialClient(t, addr)
	c.conn.SetDeadline(time.Now().Add(3 * time.Second))
	c.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999\r\n\r\nabc")
	if resp, _, _ := c.response("POST"); resp.StatusCode != 408 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if rest := c.rest(); rest != "" {
		t.Fatalf("after the 408: %q", rest)
	}
	select {
	case <-upClosed:
	case <-time.After(3 * time.Second):
		t.Fatal("the server's connection is still open")
	}
	for range 2 {
		if err := <-errs; err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Serve: %v", err)
		}
	}
	if got := origRec.received(); len(got) != 2 || !strings.HasSuffix(got[1], "\r\n\r\nabc") {
		t.Errorf("the server got %q", got)
	}
}

// A client that asked for a 100 waits for it as long as the server takes:
// the body's clock starts with the 100, not with the head.
func TestServeSlow100Continue(t *testing.T) {
	defer func(d time.Duration) { bodyTimeout = d }(bodyTimeout)
	bodyTimeout = 300 * time.Millisecond
	orig, _ := rawServer(t, func(n int, conn net.Conn, br *bufio.Reader) {
		readHead(br)
		time.Sleep(3 * bodyTimeout) // a slow check before the 100
		io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n")
		b := make([]byte, 5)
		io.ReadFull(br, b)
		fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n%s", b)
	})
	addr, _ := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{})
	c := dialClient(t, addr)
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	c.send("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	line, err := c.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("waiting for the 100: %q %v", line, err)
	}
	c.br.ReadString('\n') // the 100's empty line
	c.send("hello")
	if resp, body, _ := c.response("POST"); resp.StatusCode != 200 || body != "hello" {
		t.Fatalf("after the 100: %d %q", resp.StatusCode, body)
	}
}

// TestServeBadResponse: a response the agent can't frame safely is a 502.
func TestServeBadResponse(t *testing.T) {
	orig, _ := rawServer(t, func(n int, conn net.Conn, br *bufio.Reader) {
		readHead(br)
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	})
	addr, _ := serveAll(t, func(*Request) Upstream { return nil }, orig, Limits{})
	c := dialClient(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _, _ := c.response("GET"); resp.StatusCode != 502 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// TestServeCancel: ending the context ends a Serve waiting on a response.
func TestServeCancel(t *testing.T) {
	orig, _ := rawServer(t, func(n int, conn net.Conn, br *bufio.Reader) {
		io.Copy(io.Discard, br)
	})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- Serve(ctx, conn, bufio.NewReader(conn), func(*Request) Upstream { return nil }, orig, Limits{})
	}()
	c := dialClient(t, ln.Addr().String())
	c.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running after its context ended")
	}
}

// TestServePeeked: the caller peeks the first bytes to detect HTTP, then
// hands the same reader to Serve, which forwards them like the rest.
func TestServePeeked(t *testing.T) {
	orig, origRec := httpServer(t, "orig", echo("orig"))
	ln := listen(t)
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		br := bufio.NewReader(conn)
		peek, _ := br.Peek(len("PATCH /p HTTP/1.1\r\n"))
		if k := Detect(peek); k != HTTP1 {
			conn.Close()
			done <- fmt.Errorf("Detect(%q) = %v", peek, k)
			return
		}
		done <- Serve(context.Background(), conn, br, nil, orig, Limits{})
	}()
	const req = "PATCH /p HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok"
	c := dialClient(t, ln.Addr().String())
	c.send(req)
	if _, body, _ := c.response("PATCH"); body != "orig PATCH /p ok" {
		t.Fatalf("body %q", body)
	}
	c.conn.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	assertReceived(t, "original", origRec, []string{req})
}
