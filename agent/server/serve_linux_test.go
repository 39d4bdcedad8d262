//go:build linux

package server

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/agent/target"
	"github.com/doppel-dev/doppel/protocol"
)

// podFixture is a sleeping child process in the test's own namespaces,
// standing in for a pod (entering them needs no privilege), and a running
// agent service for it.
type podFixture struct {
	addr  string
	token string
	done  chan error
	child *exec.Cmd
}

func startPod(t *testing.T, cfg Config) *podFixture {
	t.Helper()
	child := exec.Command("sleep", "60")
	child.Env = []string{"POD_ONLY_VAR=from-the-pod", "PATH=/usr/bin:/bin"}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		child.Process.Kill()
		child.Wait()
	})
	tg, err := target.Open(child.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })

	token := protocol.NewToken()
	cfg.Listen = "127.0.0.1:0"
	cfg.Handler = NewPod(tg, nil)
	cfg.TokenHashes = []protocol.TokenHash{protocol.HashToken(token)}
	cfg.AgentVersion = "test"
	cfg.TargetExited = tg.Exited()
	ready := make(chan net.Addr, 1)
	cfg.Ready = func(a net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	f := &podFixture{token: token, done: make(chan error, 1), child: child}
	go func() { f.done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		<-f.done
	})
	select {
	case a := <-ready:
		f.addr = a.String()
	case err := <-f.done:
		t.Fatalf("Run: %v", err)
	}
	return f
}

func (f *podFixture) client(t *testing.T, id string) *protocol.Client {
	t.Helper()
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := protocol.Dial(ctx, conn, protocol.Hello{SessionID: id, Token: f.token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *podFixture) waitExit(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-f.done:
		f.done <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("the agent still runs after %v", within)
		return nil
	}
}

func TestPodOverProtocol(t *testing.T) {
	f := startPod(t, Config{IdleTimeout: 300 * time.Millisecond})
	c := f.client(t, "pod-test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	env, err := c.Env(ctx)
	if err != nil || !slices.Equal(env, f.child.Env) {
		t.Errorf("Env = %q, %v", env, err)
	}
	host, _ := os.Hostname()
	if h, err := c.Hostname(ctx); err != nil || h != host {
		t.Errorf("Hostname = %q, %v", h, err)
	}

	// The child's root is the test's root: a temp dir shows through it.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "data.txt"), []byte("pod file"), 0o640)
	os.Symlink("data.txt", filepath.Join(dir, "link"))
	fi, err := c.Stat(ctx, filepath.Join(dir, "link"))
	if err != nil || fi.Size != 8 || fi.FileMode() != 0o640 || fi.Name != "link" || fi.Ino == 0 {
		t.Errorf("Stat = %+v, %v", fi, err)
	}
	if fi, err := c.Lstat(ctx, filepath.Join(dir, "link")); err != nil || fi.FileMode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat = %+v, %v", fi, err)
	}
	if target, err := c.Readlink(ctx, filepath.Join(dir, "link")); err != nil || target != "data.txt" {
		t.Errorf("Readlink = %q, %v", target, err)
	}
	entries, err := c.ReadDir(ctx, dir)
	if err != nil || len(entries) != 2 || entries[0].Name != "data.txt" || entries[0].Type != protocol.ModeRegular {
		t.Errorf("ReadDir = %+v, %v", entries, err)
	}
	r, fi, err := c.Open(ctx, filepath.Join(dir, "data.txt"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(r)
	r.Close()
	if string(data) != "pod file" || fi.Size != 8 {
		t.Errorf("Open: %q size %d", data, fi.Size)
	}
	if _, err := c.Stat(ctx, filepath.Join(dir, "none")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Stat(none) = %v", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	conn, err := c.DialTCP(ctx, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	data, _ = io.ReadAll(conn)
	conn.Close()
	if string(data) != "hello" {
		t.Errorf("TCP read %q", data)
	}
	l.Close()
	if _, err := c.DialTCP(ctx, l.Addr().String()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial closed port: %v", err)
	}

	// Ending the last session starts the idle window; then the agent exits.
	c.Close()
	if err := f.waitExit(t, 5*time.Second); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

func TestStartupWindow(t *testing.T) {
	start := time.Now()
	f := startPod(t, Config{StartupTimeout: 200 * time.Millisecond})
	if err := f.waitExit(t, 5*time.Second); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("exited after %v", took)
	}
}

func TestSessionKeepsAgent(t *testing.T) {
	f := startPod(t, Config{StartupTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	c := f.client(t, "stay")
	defer c.Close()
	select {
	case err := <-f.done:
		t.Fatalf("the agent exited with a session: %v", err)
	case <-time.After(600 * time.Millisecond):
	}
}

func TestTargetExitStopsAgent(t *testing.T) {
	f := startPod(t, Config{})
	c := f.client(t, "s")
	f.child.Process.Kill()
	if err := f.waitExit(t, 5*time.Second); !errors.Is(err, ErrTargetExited) {
		t.Fatalf("Run = %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the session outlived the agent")
	}
}

func TestLifetime(t *testing.T) {
	l := newLifetime(50*time.Millisecond, 50*time.Millisecond)
	l.sessions(1)
	select {
	case r := <-l.expired:
		t.Fatalf("expired with a session: %s", r)
	case <-time.After(150 * time.Millisecond):
	}
	l.sessions(0)
	select {
	case r := <-l.expired:
		t.Logf("expired: %s", r)
	case <-time.After(2 * time.Second):
		t.Fatal("idle window did not expire")
	}
}

// TestSharedAgent: a second session joins with a token the agent learns
// from its token file after it started; both work, and the idle window
// runs only once the last one is gone.
func TestSharedAgent(t *testing.T) {
	d := newDownwardFile(t, map[string]string{"doppel.dev/port": "7463"})
	tf, err := OpenTokenFile(d.path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := startPod(t, Config{AcceptedTokens: tf.Hashes, IdleTimeout: 300 * time.Millisecond})
	first := f.client(t, "first")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	second := protocol.NewToken()
	dial := func(id, token string) (*protocol.Client, error) {
		conn, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		return protocol.Dial(ctx, conn, protocol.Hello{SessionID: id, Token: token})
	}
	if _, err := dial("second", second); !errors.Is(err, protocol.ErrUnauthorized) {
		t.Fatalf("before the annotation: %v", err)
	}
	h := protocol.HashToken(second)
	d.write(t, map[string]string{"doppel.dev/port": "7463", h.Annotation(): h.String()})
	c2, err := dial("second", second)
	if err != nil {
		t.Fatalf("after the annotation: %v", err)
	}
	for _, c := range []*protocol.Client{first, c2} {
		if env, err := c.Env(ctx); err != nil || !slices.Equal(env, f.child.Env) {
			t.Errorf("Env = %q, %v", env, err)
		}
	}
	// The first session may not be taken over with the second token.
	if _, err := dial("first", second); !errors.Is(err, protocol.ErrSessionInUse) {
		t.Errorf("first session with the second token: %v", err)
	}

	first.Close()
	select {
	case err := <-f.done:
		t.Fatalf("the agent exited with a session left: %v", err)
	case <-time.After(700 * time.Millisecond):
	}
	if _, err := c2.Hostname(ctx); err != nil {
		t.Errorf("second session after the first closed: %v", err)
	}
	c2.Close()
	if err := f.waitExit(t, 5*time.Second); err != nil {
		t.Fatalf("Run = %v", err)
	}
}
