package session

import (
	"context"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/protocol"
)

// envPod is a protocol handler that only knows its environment.
type envPod struct{}

func (envPod) Env(context.Context) ([]string, error)       { return []string{"POD=1"}, nil }
func (envPod) Hostname(context.Context) (string, error)    { return "pod", nil }
func (envPod) DNS(context.Context, []byte) ([]byte, error) { return nil, syscall.ENOSYS }
func (envPod) Stat(context.Context, string) (protocol.FileInfo, error) {
	return protocol.FileInfo{}, syscall.ENOENT
}
func (envPod) Lstat(context.Context, string) (protocol.FileInfo, error) {
	return protocol.FileInfo{}, syscall.ENOENT
}
func (envPod) ReadDir(context.Context, string) ([]protocol.DirEntry, error) {
	return nil, syscall.ENOENT
}
func (envPod) Readlink(context.Context, string) (string, error) { return "", syscall.ENOENT }
func (envPod) Open(context.Context, string) (io.ReadCloser, protocol.FileInfo, error) {
	return nil, protocol.FileInfo{}, syscall.ENOENT
}
func (envPod) Dial(context.Context, string, string) (net.Conn, error) {
	return nil, syscall.ECONNREFUSED
}

// cuttable hands out connections to addr that the test can cut, as a
// dropped port-forward would be.
type cuttable struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
}

func (c *cuttable) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err == nil {
		c.mu.Lock()
		c.conns = append(c.conns, conn)
		c.mu.Unlock()
	}
	return conn, err
}

func (c *cuttable) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

func TestReconnectingResumesAfterATransportDrop(t *testing.T) {
	f := newReconnectFixture(t)
	ctx := context.Background()
	if env, err := f.r.Env(ctx); err != nil || env[0] != "POD=1" {
		t.Fatalf("before the drop: %v %v", env, err)
	}
	f.drop(t)
	env, err := f.r.Env(ctx)
	if err != nil || env[0] != "POD=1" {
		t.Fatalf("after the drop: %v %v", env, err)
	}
	f.r.mu.Lock()
	resumed := f.r.client.Resumed()
	f.r.mu.Unlock()
	if !resumed {
		t.Error("the session was not resumed by id")
	}
	if states := f.heard(); len(states) != 2 || states[0] != "reconnecting" || states[1] != "ready" {
		t.Errorf("states %v, want reconnecting then ready", states)
	}
}

// reconnectFixture is a Reconnecting over a real protocol server whose
// transport the test cuts, holds down and gates.
type reconnectFixture struct {
	r         *Reconnecting
	first     *protocol.Client
	transport *cuttable

	mu     sync.Mutex
	down   bool          // dials fail while set
	gate   chan struct{} // if set, dials wait for it to close
	dialed []*protocol.Client
	states []string
}

func newReconnectFixture(t *testing.T) *reconnectFixture {
	t.Helper()
	token := protocol.NewToken()
	srv := &protocol.Server{Handler: envPod{}, TokenHashes: []protocol.TokenHash{protocol.HashToken(token)},
		ResumeGrace: 10 * time.Second, KeepaliveTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Serve(ctx, ln)
	f := &reconnectFixture{transport: &cuttable{addr: ln.Addr().String()}}
	hello := protocol.Hello{SessionID: "reconnect-" + t.Name(), Token: token}
	dial := func(ctx context.Context, resume bool) (*protocol.Client, error) {
		f.mu.Lock()
		down, gate := f.down, f.gate
		f.mu.Unlock()
		if down {
			return nil, syscall.ECONNREFUSED
		}
		if gate != nil {
			<-gate
		}
		conn, err := f.transport.dial(ctx)
		if err != nil {
			return nil, err
		}
		h := hello
		h.Resume = resume
		c, err := protocol.Dial(ctx, conn, h)
		if err == nil {
			f.mu.Lock()
			f.dialed = append(f.dialed, c)
			f.mu.Unlock()
		}
		return c, err
	}
	if f.first, err = dial(ctx, false); err != nil {
		t.Fatal(err)
	}
	f.r = NewReconnecting(f.first, dial, 10*time.Second, nil)
	f.r.OnState = func(s string, _ error) {
		f.mu.Lock()
		f.states = append(f.states, s)
		f.mu.Unlock()
	}
	t.Cleanup(func() { f.r.Close() })
	return f
}

// drop cuts the transport and waits until the client saw it.
func (f *reconnectFixture) drop(t *testing.T) {
	t.Helper()
	f.transport.cut()
	select {
	case <-f.first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not notice the drop")
	}
}

func (f *reconnectFixture) heard() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.states...)
}

// A caller that stops waiting during a redial (a DNS answer's timeout) does
// not end the session: nobody hears "ended", and the next call resumes.
func TestReconnectingCallerTimeoutIsNoEnd(t *testing.T) {
	f := newReconnectFixture(t)
	f.mu.Lock()
	f.down = true
	f.mu.Unlock()
	f.drop(t)
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := f.r.Env(short); err == nil {
		t.Fatal("Env succeeded while the agent could not be reached")
	}
	for _, s := range f.heard() {
		if s == "ended" {
			t.Fatalf("a caller's timeout was reported as the session's end: %v", f.heard())
		}
	}
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	if env, err := f.r.Env(context.Background()); err != nil || env[0] != "POD=1" {
		t.Fatalf("after the agent came back: %v %v (states %v)", env, err, f.heard())
	}
}

// Close during a redial: the connection that redial makes is closed, not
// kept (it would hold the agent and the session's subscriptions).
func TestReconnectingCloseDuringRedial(t *testing.T) {
	f := newReconnectFixture(t)
	gate := make(chan struct{})
	f.mu.Lock()
	f.gate = gate
	f.mu.Unlock()
	f.drop(t)
	done := make(chan error, 1)
	go func() { _, err := f.r.Env(context.Background()); done <- err }()
	time.Sleep(100 * time.Millisecond) // the redial waits at the gate
	f.r.Close()
	close(gate)
	if err := <-done; err == nil {
		t.Error("Env succeeded on a closed session")
	}
	f.mu.Lock()
	dialed := f.dialed
	f.mu.Unlock()
	if len(dialed) != 2 {
		t.Fatalf("%d connections dialed, want the first and the redial's", len(dialed))
	}
	select {
	case <-dialed[1].Done():
	case <-time.After(5 * time.Second):
		t.Error("the redial's connection outlived Close")
	}
}
