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
	token := protocol.NewToken()
	srv := &protocol.Server{Handler: envPod{}, TokenHashes: []protocol.TokenHash{protocol.HashToken(token)},
		ResumeGrace: 10 * time.Second, KeepaliveTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx, ln)

	transport := &cuttable{addr: ln.Addr().String()}
	hello := protocol.Hello{SessionID: "reconnect-test", Token: token}
	dial := func(ctx context.Context, resume bool) (*protocol.Client, error) {
		conn, err := transport.dial(ctx)
		if err != nil {
			return nil, err
		}
		h := hello
		h.Resume = resume
		return protocol.Dial(ctx, conn, h)
	}
	first, err := dial(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	r := NewReconnecting(first, dial, 10*time.Second, nil)
	r.OnState = func(s string, _ error) { states = append(states, s) }
	defer r.Close()

	if env, err := r.Env(ctx); err != nil || env[0] != "POD=1" {
		t.Fatalf("before the drop: %v %v", env, err)
	}
	transport.cut()
	select {
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not notice the drop")
	}
	env, err := r.Env(ctx)
	if err != nil || env[0] != "POD=1" {
		t.Fatalf("after the drop: %v %v", env, err)
	}
	r.mu.Lock()
	resumed := r.client.Resumed()
	r.mu.Unlock()
	if !resumed {
		t.Error("the session was not resumed by id")
	}
	if len(states) != 2 || states[0] != "reconnecting" || states[1] != "ready" {
		t.Errorf("states %v, want reconnecting then ready", states)
	}
}
