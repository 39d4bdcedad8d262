package incoming

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/agent/incoming/h2"
	"github.com/doppel-dev/doppel/protocol"
)

// flakyListener fails its first accepts as a process out of descriptors
// does, then hands out conns until closed.
type flakyListener struct {
	fails  int
	conns  chan net.Conn
	closed chan struct{}
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *flakyListener) Close() error   { close(l.closed); return nil }
func (l *flakyListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestAcceptOutlivesEMFILE: running out of descriptors for a moment does
// not stop the redirect listener (its ports would be black-holed); closing
// it does.
func TestAcceptOutlivesEMFILE(t *testing.T) {
	m := &Manager{log: slog.New(slog.DiscardHandler), ctx: context.Background()}
	ln := &flakyListener{fails: 3, conns: make(chan net.Conn), closed: make(chan struct{})}
	done := make(chan struct{})
	go func() { m.accept(ln, 1); close(done) }()
	client, served := net.Pipe()
	select {
	case ln.conns <- served: // not redirected: the loop closes it
	case <-done:
		t.Fatal("the accept loop gave up on EMFILE")
	case <-time.After(5 * time.Second):
		t.Fatal("the accept loop did not accept after EMFILE")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the accepted conn: %v, want it closed", err)
	}
	ln.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the accept loop goes on after its listener closed")
	}
}

// fakeRedirect records the redirected ports; its Add and Remove take a
// moment, as netlink calls do.
type fakeRedirect struct {
	mu    sync.Mutex
	ports map[uint16]bool
	fail  error // Add fails with it
}

func (f *fakeRedirect) set(port uint16, on bool) error {
	time.Sleep(50 * time.Microsecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	if on && f.fail != nil {
		return f.fail
	}
	f.ports[port] = on
	return nil
}
func (f *fakeRedirect) Add(port uint16) error    { return f.set(port, true) }
func (f *fakeRedirect) Remove(port uint16) error { return f.set(port, false) }
func (f *fakeRedirect) Ports() []uint16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ps []uint16
	for p, on := range f.ports {
		if on {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}
func (f *fakeRedirect) Close() error    { return nil }
func (f *fakeRedirect) Backend() string { return "fake" }
func (f *fakeRedirect) Name() string    { return "fake" }

// TestPlaceFollowsTheTable: sessions subscribing and leaving a port at
// once leave it redirected exactly when the table has a subscription.
func TestPlaceFollowsTheTable(t *testing.T) {
	red := &fakeRedirect{ports: map[uint16]bool{}}
	m := &Manager{log: slog.New(slog.DiscardHandler), table: newTable(), red: red, router: &router{pool: h2.NewPool(h2.PoolOptions{})}}
	ctx := context.Background()
	a, b := &protocol.SessionInfo{ID: "a"}, &protocol.SessionInfo{ID: "b"}
	steal := protocol.SubscribeArgs{Port: 80, Mode: protocol.ModeSteal}
	mirror := protocol.SubscribeArgs{Port: 80, Mode: protocol.ModeMirror}
	for i := range 200 {
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := m.Subscribe(ctx, a, steal); err != nil {
				t.Error(err)
			}
			m.SessionGone("a")
		})
		wg.Go(func() {
			if _, err := m.Subscribe(ctx, b, mirror); err != nil {
				t.Error(err)
			}
			if i%2 == 0 {
				m.Unsubscribe(ctx, b, 80)
			}
		})
		wg.Wait()
		_, any := m.table.mirrorOnly(80)
		if got := len(red.Ports()) == 1; got != any {
			t.Fatalf("round %d: redirected %v, but the table has subscriptions: %v", i, got, any)
		}
		m.table.removeSession("b")
		m.place(80)
	}
}

// A subscription whose redirect fails takes nothing with it: the same
// session's earlier subscription of the port, and a steal it would have
// overridden, still hold, in their order.
func TestFailedSubscribeKeepsWhatItReplaced(t *testing.T) {
	red := &fakeRedirect{ports: map[uint16]bool{}}
	m := &Manager{log: slog.New(slog.DiscardHandler), table: newTable(), red: red, router: &router{pool: h2.NewPool(h2.PoolOptions{})}}
	ctx := context.Background()
	a, b := &protocol.SessionInfo{ID: "a"}, &protocol.SessionInfo{ID: "b"}
	if _, err := m.Subscribe(ctx, a, protocol.SubscribeArgs{Port: 80, Mode: protocol.ModeSteal}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Subscribe(ctx, b, protocol.SubscribeArgs{Port: 80, Mode: protocol.ModeMirror}); err != nil {
		t.Fatal(err)
	}
	red.mu.Lock()
	red.ports[80] = false // the redirect went away: the next place adds it again, and fails
	red.fail = syscall.ENOBUFS
	red.mu.Unlock()
	if _, err := m.Subscribe(ctx, b, protocol.SubscribeArgs{Port: 80, Mode: protocol.ModeSteal, Override: true}); err == nil {
		t.Fatal("the subscription succeeded with a failing redirect")
	}
	r := m.table.route(80)
	if r.steal == nil || r.steal.sess.SessionID() != "a" || len(r.mirrors) != 1 || r.mirrors[0].sess.SessionID() != "b" {
		t.Errorf("after the failed override: steal %v, mirrors %d; want a's steal and b's mirror kept", r.steal, len(r.mirrors))
	}
	if subs := m.table.ports[80]; len(subs) != 2 || subs[0].sess.SessionID() != "a" {
		t.Errorf("after the undo: %d subscriptions, want a's steal first and b's mirror", len(subs))
	}
}

// A client that stops reading (its window stays shut) or vanishes does not
// hold its connection forever: writes to it fail after clientUserTimeout.
func TestClientThatStopsReadingIsDropped(t *testing.T) {
	old := clientUserTimeout
	clientUserTimeout = time.Second
	t.Cleanup(func() { clientUserTimeout = old })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var d net.Dialer
	d.Control = func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
	}
	client, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close() // never read: its window closes
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	boundUnacked(c)
	start := time.Now()
	c.SetWriteDeadline(start.Add(30 * time.Second))
	buf := make([]byte, 64<<10)
	for {
		if _, err = c.Write(buf); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("writing to a client that stopped reading: %v after %s, want ETIMEDOUT", err, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("dropped %s after the first write", time.Since(start).Round(time.Millisecond))
}
