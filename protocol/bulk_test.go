package protocol

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pattern is n bytes that show a missing, doubled or misplaced chunk.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// bulkServer answers "GET\n" with the pattern, then waits for the
// client's EOF and says "bye": bytes from the pod after a half-close, on
// whichever connection carries them by then.
func bulkServer(t *testing.T, size int, closed chan<- struct{}) string {
	return echoServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		if line, err := r.ReadString('\n'); err != nil || line != "GET\n" {
			return
		}
		if _, err := c.Write(pattern(size)); err != nil {
			if closed != nil {
				close(closed)
			}
			return
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			return
		}
		io.WriteString(c, "bye")
	})
}

func agentDialer(a *testAgent) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", a.addr)
	}
}

// download sends GET, reads size bytes and checks them, half-closes and
// reads the goodbye.
func download(t *testing.T, conn net.Conn, size int) {
	t.Helper()
	if _, err := io.WriteString(conn, "GET\n"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatalf("reading the download: %v", err)
	}
	if !bytes.Equal(got, pattern(size)) {
		t.Fatal("the download's bytes differ from what the pod sent")
	}
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(conn)
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after the half-close: %q %v, want \"bye\" and EOF", rest, err)
	}
}

// A download past the threshold moves to a bulk connection: every byte
// arrives once and in order, the helper's half-close still reaches the
// pod on the stream, and the pod's answer to it and its EOF come on the
// bulk connection.
func TestBulkDownload(t *testing.T) {
	const size = 8 << 20
	addr := bulkServer(t, size, nil)
	a := startAgent(t, nil)
	c := a.client(t)
	c.SetBulk(agentDialer(a), 1<<20)
	for i := range 3 {
		conn, err := c.DialTCP(testCtx(t), addr)
		if err != nil {
			t.Fatal(err)
		}
		download(t, conn, size)
		conn.Close()
		if got := c.BulkCount(); got != int64(i+1) {
			t.Fatalf("after %d downloads, %d moved to a bulk connection", i+1, got)
		}
	}
	// Early dials too.
	conn, err := c.DialTCPEarly(testCtx(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	download(t, conn, size)
	conn.Close()
	if got := c.BulkCount(); got != 4 {
		t.Fatalf("the early dial's download did not move (%d bulk connections)", got)
	}
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.bulkActive == 0 })
}

// A bulk connection that can't be had leaves the download on its stream.
func TestBulkRefusedStaysOnStream(t *testing.T) {
	const size = 4 << 20
	addr := bulkServer(t, size, nil)
	a := startAgent(t, nil)
	for name, dial := range map[string]Dialer{
		"no port-forward": func(context.Context) (net.Conn, error) { return nil, errors.New("port-forward refused") },
		"another session": func(ctx context.Context) (net.Conn, error) {
			// The right agent, but the join names a session it does not know.
			conn, err := agentDialer(a)(ctx)
			return &renamedJoin{Conn: conn}, err
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := a.client(t)
			c.SetBulk(dial, 64<<10)
			conn, err := c.DialTCP(testCtx(t), addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			download(t, conn, size)
			if got := c.BulkCount(); got != 0 {
				t.Errorf("%d bulk connections, want none", got)
			}
		})
	}
}

// renamedJoin changes the session id of the join it carries (the
// session "another_session" becomes "znother_session", same length).
type renamedJoin struct{ net.Conn }

func (r *renamedJoin) Write(b []byte) (int, error) {
	n := len(b)
	b = bytes.Replace(b, []byte(`"session":"another_session"`), []byte(`"session":"znother_session"`), 1)
	if _, err := r.Conn.Write(b); err != nil {
		return 0, err
	}
	return n, nil
}

// Closing a moved connection before the download ends drops the pod's
// connection at once, as on the stream.
func TestBulkAbort(t *testing.T) {
	closed := make(chan struct{})
	addr := bulkServer(t, 256<<20, closed)
	a := startAgent(t, nil)
	c := a.client(t)
	c.SetBulk(agentDialer(a), 1<<20)
	conn, err := c.DialTCP(testCtx(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET\n")
	if _, err := io.ReadFull(conn, make([]byte, 4<<20)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return c.BulkCount() == 1 })
	conn.Close()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the pod's connection still takes bytes 5 s after the helper closed")
	}
}

// An agent that does not announce FeatureBulk (an older one) is never
// sent a join.
func TestBulkNeedsTheFeature(t *testing.T) {
	const size = 4 << 20
	addr := bulkServer(t, size, nil)
	a := startAgent(t, nil)
	c := a.client(t)
	c.hello.Features = nil
	dials := 0
	c.SetBulk(func(ctx context.Context) (net.Conn, error) { dials++; return agentDialer(a)(ctx) }, 64<<10)
	conn, err := c.DialTCP(testCtx(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	download(t, conn, size)
	if dials != 0 || c.BulkCount() != 0 {
		t.Errorf("%d bulk dials, %d joins; want none", dials, c.BulkCount())
	}
}

// A pod that sends and closes at once races the join: whether the join
// arrives before the pod's EOF or after it (refused), every byte arrives
// and then EOF.
func TestBulkJoinRacesThePodsEOF(t *testing.T) {
	const size = 1 << 20
	addr := echoServer(t, func(c net.Conn) { c.Write(pattern(size)) })
	a := startAgent(t, nil)
	c := a.client(t)
	c.SetBulk(agentDialer(a), 64<<10)
	for range 20 {
		conn, err := c.DialTCP(testCtx(t), addr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || !bytes.Equal(got, pattern(size)) {
			t.Fatalf("read %d bytes (%v), want the %d the pod sent", len(got), err, size)
		}
	}
	t.Logf("%d of 20 connections moved", c.BulkCount())
}

// stuckConn is a bulk connection whose helper side never closes: a
// port-forward path that went silent.
type stuckConn struct{ net.Conn }

func (stuckConn) Close() error { return nil }

// The stream's abort ends the relay even when its splice is blocked
// writing to a bulk connection nobody reads or closes.
func TestBulkAbortEndsABlockedSplice(t *testing.T) {
	closed := make(chan struct{})
	addr := bulkServer(t, 256<<20, closed)
	a := startAgent(t, nil)
	var real []net.Conn
	t.Cleanup(func() { // before the agent's shutdown, which waits for its relays
		for _, c := range real {
			c.Close()
		}
	})
	c := a.client(t)
	c.SetBulk(func(ctx context.Context) (net.Conn, error) {
		conn, err := agentDialer(a)(ctx)
		if err == nil {
			real = append(real, conn)
			conn = stuckConn{conn}
		}
		return conn, err
	}, 1<<20)
	conn, err := c.DialTCP(testCtx(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET\n")
	if _, err := io.ReadFull(conn, make([]byte, 2<<20)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return c.BulkCount() == 1 })
	time.Sleep(300 * time.Millisecond) // the socket buffers fill: the splice blocks
	conn.Close()                       // the abort; the bulk connection stays open on this side
	relays := func() int {
		a.srv.mu.Lock()
		defer a.srv.mu.Unlock()
		n := 0
		for _, sess := range a.srv.sessions {
			if sess.live != nil {
				sess.live.mu.Lock()
				n += len(sess.live.relays)
				sess.live.mu.Unlock()
			}
		}
		return n
	}
	waitFor(t, func() bool { return relays() == 0 })
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the pod's connection still takes bytes 5 s after the abort")
	}
}

// A read deadline set before a download moved to its bulk connection
// holds there too: a pod that stops sending times the read out.
func TestBulkKeepsTheReadDeadline(t *testing.T) {
	addr := echoServer(t, func(c net.Conn) {
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "GET\n" {
			return
		}
		c.Write(pattern(2 << 20))
		io.Copy(io.Discard, c) // then nothing more, until the client goes
	})
	a := startAgent(t, nil)
	c := a.client(t)
	c.SetBulk(agentDialer(a), 1<<20)
	conn, err := c.DialTCP(testCtx(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.WriteString(conn, "GET\n")
	if _, err := io.ReadFull(conn, make([]byte, 2<<20)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return c.BulkCount() == 1 })
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := conn.Read(make([]byte, 1)); err != nil { // (0, nil) at the move to the bulk connection
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read past the deadline: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the read on the bulk connection ignores the deadline set before it joined")
	}
}
