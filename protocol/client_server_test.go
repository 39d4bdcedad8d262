package protocol

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/internal/testnet"
	"github.com/hashicorp/yamux"
)

// fakePod is an in-memory Handler: a few files, an environment, and dials
// that go to loopback (the test's own servers) only.
type fakePod struct {
	env   []string
	files map[string]fakeFile
	dials atomic.Int32
}

type fakeFile struct {
	mode    uint32
	content string
	target  string // symlink
}

func newFakePod() *fakePod {
	p := &fakePod{
		env: []string{"PATH=/usr/bin", "POD_ONLY=yes", "EMPTY="},
		files: map[string]fakeFile{
			"/":               {mode: ModeDir | 0o755},
			"/etc":            {mode: ModeDir | 0o755},
			"/etc/hostname":   {mode: ModeRegular | 0o644, content: "pod-7\n"},
			"/etc/link":       {mode: ModeSymlink | 0o777, target: "hostname"},
			"/big":            {mode: ModeDir | 0o755},
			"/secret":         {mode: ModeRegular},
			"/etc/large.bin":  {mode: ModeRegular | 0o600, content: strings.Repeat("0123456789abcdef", 1<<16)},
			"/proc/1/environ": {mode: ModeRegular | 0o400, content: "A=1\x00"},
		},
	}
	for i := range 2500 {
		p.files[fmt.Sprintf("/big/f%05d", i)] = fakeFile{mode: ModeRegular | 0o644}
	}
	return p
}

func (p *fakePod) Env(context.Context) ([]string, error)    { return p.env, nil }
func (p *fakePod) Hostname(context.Context) (string, error) { return "pod-7", nil }
func (p *fakePod) lookup(name string) (fakeFile, error) {
	f, ok := p.files[name]
	if !ok {
		return f, &fs.PathError{Op: "stat", Path: name, Err: syscall.ENOENT}
	}
	if name == "/secret" {
		return f, &fs.PathError{Op: "open", Path: name, Err: syscall.EACCES}
	}
	return f, nil
}

func (p *fakePod) info(name string, f fakeFile) FileInfo {
	size := int64(len(f.content))
	if f.mode&ModeTypeMask == ModeSymlink {
		size = int64(len(f.target))
	}
	if strings.HasPrefix(name, "/proc/") {
		size = 0 // as procfs reports
	}
	return FileInfo{Name: path.Base(name), Mode: f.mode, Size: size, Mtime: 1700000000123456789}
}

// DNS answers with the query itself, flagged as a response.
func (p *fakePod) DNS(_ context.Context, q []byte) ([]byte, error) {
	a := append([]byte(nil), q...)
	a[2] |= 0x80
	return a, nil
}

func (p *fakePod) Stat(_ context.Context, name string) (FileInfo, error) {
	f, err := p.lookup(name)
	if err != nil {
		return FileInfo{}, err
	}
	if f.mode&ModeTypeMask == ModeSymlink {
		return p.Stat(context.Background(), path.Join(path.Dir(name), f.target))
	}
	return p.info(name, f), nil
}

func (p *fakePod) Lstat(_ context.Context, name string) (FileInfo, error) {
	f, err := p.lookup(name)
	if err != nil {
		return FileInfo{}, err
	}
	return p.info(name, f), nil
}

func (p *fakePod) ReadDir(_ context.Context, dir string) ([]DirEntry, error) {
	if _, err := p.lookup(dir); err != nil {
		return nil, err
	}
	var out []DirEntry
	for name, f := range p.files {
		if name != "/" && path.Dir(name) == dir {
			out = append(out, DirEntry{Name: path.Base(name), Type: f.mode & ModeTypeMask})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (p *fakePod) Readlink(_ context.Context, name string) (string, error) {
	f, err := p.lookup(name)
	if err != nil {
		return "", err
	}
	if f.mode&ModeTypeMask != ModeSymlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: syscall.EINVAL}
	}
	return f.target, nil
}

func (p *fakePod) Open(_ context.Context, name string) (io.ReadCloser, FileInfo, error) {
	fi, err := p.Stat(context.Background(), name)
	if err != nil {
		return nil, fi, err
	}
	if fi.IsDir() {
		return nil, fi, &fs.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	}
	f, _ := p.lookup(name)
	return io.NopCloser(strings.NewReader(f.content)), fi, nil
}

func (p *fakePod) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	p.dials.Add(1)
	host, _, err := net.SplitHostPort(address)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		return nil, syscall.ENETUNREACH // the test pod reaches loopback only
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

type testAgent struct {
	srv   *Server
	addr  string
	token string
	pod   *fakePod
}

// startAgent serves a fake pod on a loopback listener for the test's
// duration.
func startAgent(t testing.TB, configure func(*Server)) *testAgent {
	t.Helper()
	token := NewToken()
	pod := newFakePod()
	srv := &Server{
		Handler:      pod,
		TokenHashes:  []TokenHash{HashToken(token)},
		AgentVersion: "test-agent",
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if configure != nil {
		configure(srv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testAgent{srv: srv, addr: l.Addr().String(), token: token, pod: pod}
}

// testWriter sends slog output to the test log, and nowhere once the
// test has ended.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	defer func() { recover() }() // logging after the test ended panics
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (a *testAgent) hello(id string) Hello {
	return Hello{SessionID: id, Token: a.token, Client: ClientInfo{User: "dev", Host: "laptop", Version: "test", PID: os.Getpid()}}
}

func (a *testAgent) dial(t testing.TB, h Hello) (*Client, error) {
	t.Helper()
	conn, err := net.Dial("tcp", a.addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return Dial(ctx, conn, h)
}

func (a *testAgent) client(t *testing.T) *Client {
	t.Helper()
	c, err := a.dial(t, a.hello(t.Name()[strings.LastIndex(t.Name(), "/")+1:]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestControlOperations(t *testing.T) {
	a := startAgent(t, nil)
	c := a.client(t)
	ctx := testCtx(t)
	if c.AgentVersion() != "test-agent" || c.Resumed() {
		t.Errorf("hello: version %q resumed %v", c.AgentVersion(), c.Resumed())
	}

	env, err := c.Env(ctx)
	if err != nil || strings.Join(env, ",") != strings.Join(a.pod.env, ",") {
		t.Errorf("Env = %q, %v", env, err)
	}
	if h, err := c.Hostname(ctx); err != nil || h != "pod-7" {
		t.Errorf("Hostname = %q, %v", h, err)
	}
	q := []byte{0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'p', 'o', 'd', 0, 0, 1, 0, 1}
	ans, err := c.DNS(ctx, q)
	if err != nil || len(ans) != len(q) || ans[2]&0x80 == 0 || ans[0] != 0xab {
		t.Errorf("DNS = %x, %v", ans, err)
	}
	if _, err := c.DNS(ctx, []byte{1, 2}); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("short DNS query: %v", err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}

	fi, err := c.Stat(ctx, "/etc/link")
	if err != nil || fi.Name != "hostname" || fi.Size != 6 || fi.FileMode() != 0o644 || fi.ModTime().Nanosecond() != 123456789 {
		t.Errorf("Stat(/etc/link) = %+v, %v", fi, err)
	}
	fi, err = c.Lstat(ctx, "/etc/link")
	if err != nil || fi.FileMode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat(/etc/link) = %+v, %v", fi, err)
	}
	if target, err := c.Readlink(ctx, "/etc/link"); err != nil || target != "hostname" {
		t.Errorf("Readlink = %q, %v", target, err)
	}
	if _, err := c.Readlink(ctx, "/etc/hostname"); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Readlink of a file: %v", err)
	}
	_, err = c.Stat(ctx, "/nope")
	var re *RemoteError
	if !errors.Is(err, syscall.ENOENT) || !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &re) || re.Op != OpStat {
		t.Errorf("Stat(/nope) = %v", err)
	}
	if _, err := c.Stat(ctx, "/secret"); !errors.Is(err, syscall.EACCES) {
		t.Errorf("Stat(/secret) = %v", err)
	}
	if _, err := c.Stat(ctx, "relative"); !errors.Is(err, ErrBadRequest) || !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Stat(relative) = %v", err)
	}
	if _, err := c.Stat(ctx, "/etc/\xff"); !errors.Is(err, syscall.EILSEQ) {
		t.Errorf("Stat(non-UTF-8) = %v", err)
	}

	entries, err := c.ReadDir(ctx, "/etc")
	if err != nil || len(entries) != 3 || entries[0].Name != "hostname" || entries[0].Type != ModeRegular {
		t.Errorf("ReadDir(/etc) = %+v, %v", entries, err)
	}
	// More entries than one page: the client pages through them.
	entries, err = c.ReadDir(ctx, "/big")
	if err != nil || len(entries) != 2500 || entries[2499].Name != "f02499" {
		t.Errorf("ReadDir(/big): %d entries, %v", len(entries), err)
	}
	if _, err := c.ReadDir(ctx, "/none"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("ReadDir(/none) = %v", err)
	}

	if err := c.call(ctx, "teleport", nil, nil); !errors.Is(err, ErrUnknownOp) || !errors.Is(err, syscall.ENOSYS) {
		t.Errorf("unknown op: %v", err)
	}
	if err := c.call(ctx, OpStat, nil, nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("stat without args: %v", err)
	}
}

func TestConcurrentRequests(t *testing.T) {
	a := startAgent(t, func(s *Server) { s.MaxRequests = 4 })
	c := a.client(t)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				if _, err := c.Stat(ctx, "/etc/hostname"); err != nil {
					errs <- err
				}
			} else if h, err := c.Hostname(ctx); err != nil || h != "pod-7" {
				errs <- fmt.Errorf("hostname %q: %v", h, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestOpen(t *testing.T) {
	a := startAgent(t, nil)
	c := a.client(t)
	ctx := testCtx(t)

	r, fi, err := c.Open(ctx, "/etc/large.bin")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	r.Close()
	if err != nil || int64(len(data)) != fi.Size || !bytes.Equal(data, []byte(a.pod.files["/etc/large.bin"].content)) {
		t.Fatalf("read %d bytes (size %d), %v", len(data), fi.Size, err)
	}

	// procfs-style: size 0 in stat, content up to EOF.
	r, fi, err = c.Open(ctx, "/proc/1/environ")
	if err != nil {
		t.Fatal(err)
	}
	data, _ = io.ReadAll(r)
	r.Close()
	if fi.Size != 0 || string(data) != "A=1\x00" {
		t.Fatalf("procfs file: size %d content %q", fi.Size, data)
	}

	if _, _, err := c.Open(ctx, "/etc"); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("Open(dir) = %v", err)
	}
	if _, _, err := c.Open(ctx, "/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(/nope) = %v", err)
	}

	// Closing before EOF aborts the transfer; the session carries on.
	r, _, err = c.Open(ctx, "/etc/large.bin")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := r.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// echoServer accepts loopback TCP connections and hands each to serve.
func echoServer(t testing.TB, serve func(net.Conn)) string { return testnet.Serve(t, serve) }

func TestDialTCPHalfClose(t *testing.T) {
	// The server answers only after the client's EOF, as a request/reply
	// protocol delimited by shutdown(SHUT_WR) does.
	addr := echoServer(t, func(c net.Conn) {
		data, _ := io.ReadAll(c)
		fmt.Fprintf(c, "got %d bytes from %s", len(data), c.RemoteAddr())
	})
	a := startAgent(t, nil)
	c := a.client(t)
	ctx := testCtx(t)

	conn, err := c.DialTCP(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.RemoteAddr().String() != addr {
		t.Errorf("RemoteAddr %v, want %s", conn.RemoteAddr(), addr)
	}
	if _, ok := conn.LocalAddr().(*net.TCPAddr); !ok {
		t.Errorf("LocalAddr %T", conn.LocalAddr())
	}
	payload := bytes.Repeat([]byte("x"), 3<<20)
	if _, err := conn.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("late")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Write after CloseWrite: %v", err)
	}
	answer, err := io.ReadAll(conn)
	want := fmt.Sprintf("got %d bytes from %s", len(payload), conn.LocalAddr())
	if err != nil || string(answer) != want {
		t.Fatalf("answer %q, %v; want %q", answer, err, want)
	}
}

func TestDialTCPErrors(t *testing.T) {
	a := startAgent(t, nil)
	c := a.client(t)
	ctx := testCtx(t)

	// A port nobody listens on: bind one, note it, close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	conn, err := c.DialTCP(ctx, closed)
	if conn != nil {
		t.Errorf("a failed dial returned a non-nil conn %#v", conn)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial closed port: %v", err)
	}
	if !strings.Contains(err.Error(), closed) {
		t.Errorf("error does not name the address: %v", err)
	}
	if _, err := c.DialTCP(ctx, "203.0.113.1:80"); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("dial unreachable: %v", err)
	}

	// A cancelled context abandons the dial.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.DialTCP(cctx, closed); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled dial: %v", err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDialTCPAbort(t *testing.T) {
	// A server that streams until its write fails: the agent must drop the
	// pod connection when the helper closes, not wait for the server.
	serverDone := make(chan error, 1)
	addr := echoServer(t, func(c net.Conn) {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				serverDone <- err
				return
			}
		}
	})
	a := startAgent(t, nil)
	c := a.client(t)
	ctx := testCtx(t)
	conn, err := c.DialTCP(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	select {
	case err := <-serverDone:
		t.Logf("pod server saw: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the pod connection outlived the helper's Close")
	}
}

func TestDialUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, MaxDatagramSize)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	a := startAgent(t, nil)
	c := a.client(t)
	ctx := testCtx(t)
	conn, err := c.DialUDP(ctx, pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, ok := conn.RemoteAddr().(*net.UDPAddr); !ok {
		t.Errorf("RemoteAddr %T", conn.RemoteAddr())
	}
	for _, msg := range []string{"one", "two", strings.Repeat("z", 9000)} {
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, MaxDatagramSize)
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != "echo:"+msg {
			t.Fatalf("read %q, %v", buf[:min(n, 20)], err)
		}
	}
	// Truncation, as recv(2) into a short buffer.
	conn.Write([]byte("truncate me"))
	small := make([]byte, 4)
	if n, err := conn.Read(small); err != nil || string(small[:n]) != "echo" {
		t.Errorf("short read %q, %v", small[:n], err)
	}
	conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if _, err := conn.Read(small); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read past deadline: %v", err)
	}
	if _, err := conn.Write(make([]byte, MaxDatagramSize+1)); !errors.Is(err, syscall.EMSGSIZE) {
		t.Errorf("oversized datagram: %v", err)
	}
}

func TestHelloRefusals(t *testing.T) {
	a := startAgent(t, nil)

	bad := a.hello("s1")
	bad.Token = NewToken()
	if _, err := a.dial(t, bad); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("bad token: %v", err)
	}

	future := a.hello("s2")
	future.Protocol = Version + 1
	_, err := a.dial(t, future)
	if !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("version mismatch: %v", err)
	}
	for _, want := range []string{fmt.Sprint(Version), fmt.Sprint(Version + 1)} {
		if !strings.Contains(err.Error(), "version "+want) {
			t.Errorf("the version error does not name version %s: %v", want, err)
		}
	}

	if _, err := a.dial(t, a.hello("bad id!")); err == nil || !strings.Contains(err.Error(), "session id") {
		t.Errorf("bad session id: %v", err)
	}
	if n := a.srv.Sessions(); n != 0 {
		t.Errorf("%d sessions after refusals", n)
	}
}

func TestHelloFromNonAgent(t *testing.T) {
	// A peer that is no doppel agent (a wrong port-forward target).
	addr := echoServer(t, func(c net.Conn) {
		c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Dial(ctx, conn, Hello{SessionID: "s", Token: "t"}); err == nil {
		t.Fatal("Dial to a non-agent succeeded")
	}
}

func TestResume(t *testing.T) {
	var mu sync.Mutex
	var counts []int
	a := startAgent(t, func(s *Server) {
		s.ResumeGrace = 300 * time.Millisecond
		s.OnSessionsChanged = func(n int) {
			mu.Lock()
			counts = append(counts, n)
			mu.Unlock()
		}
	})
	ctx := testCtx(t)
	c1, err := a.dial(t, a.hello("resume-me"))
	if err != nil {
		t.Fatal(err)
	}
	// A second transport may not take a connected session without resume.
	if _, err := a.dial(t, a.hello("resume-me")); !errors.Is(err, ErrSessionInUse) {
		t.Errorf("duplicate session: %v", err)
	}
	// Resume while the old transport still looks alive: it is replaced.
	h := a.hello("resume-me")
	h.Resume = true
	c2, err := a.dial(t, h)
	if err != nil {
		t.Fatal(err)
	}
	if !c2.Resumed() {
		t.Error("not resumed")
	}
	select {
	case <-c1.Done():
		if !errors.Is(c1.Err(), ErrConnectionLost) {
			t.Errorf("old transport ended with %v", c1.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the replaced transport stayed up")
	}
	if _, err := c2.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	// The transport breaks without a goodbye: the session waits its grace.
	c2.mux.Close()
	waitFor(t, func() bool { return a.srv.Sessions() == 1 && a.srv.connCount() == 0 })
	c3, err := a.dial(t, h)
	if err != nil {
		t.Fatalf("resume within grace: %v", err)
	}
	c3.mux.Close()
	waitFor(t, func() bool { return a.srv.Sessions() == 0 })
	if _, err := a.dial(t, h); !errors.Is(err, ErrUnknownSession) {
		t.Errorf("resume after grace: %v", err)
	}

	// Close ends the session at once.
	c4, err := a.dial(t, a.hello("short"))
	if err != nil {
		t.Fatal(err)
	}
	c4.Close()
	if !errors.Is(c4.Err(), ErrClosed) {
		t.Errorf("Err after Close: %v", c4.Err())
	}
	waitFor(t, func() bool { return a.srv.Sessions() == 0 })
	if _, err := c4.Env(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("call after Close: %v", err)
	}
	// The count is reported after the session is gone, not with it.
	lastIsZero := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return counts[len(counts)-1] == 0
	}
	waitFor(t, lastIsZero)
	mu.Lock()
	defer mu.Unlock()
	if counts[0] != 1 {
		t.Errorf("session counts %v", counts)
	}
}

func (s *Server) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestKeepalive(t *testing.T) {
	a := startAgent(t, func(s *Server) { s.KeepaliveTimeout = 400 * time.Millisecond })
	// The client pings by itself: the session outlives several timeouts.
	c := a.client(t)
	time.Sleep(1500 * time.Millisecond)
	if _, err := c.Ping(testCtx(t)); err != nil {
		t.Fatalf("session dropped although the client pinged: %v", err)
	}

	// A helper that says nothing is dropped.
	conn, err := net.Dial("tcp", a.addr)
	if err != nil {
		t.Fatal(err)
	}
	mux, _, err := newMux(conn, nil, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()
	if _, _, err := handshake(testCtx(t), mux, &Hello{Protocol: Version, SessionID: "silent", Token: a.token}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-mux.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("a silent helper kept its transport")
	}
}

func TestOversizedFrameDropsTransport(t *testing.T) {
	a := startAgent(t, nil)
	c := a.client(t)
	c.wmu.Lock()
	c.ctrl.Write([]byte{0x7f, 0xff, 0xff, 0xff})
	c.wmu.Unlock()
	select {
	case <-c.Done():
		if !errors.Is(c.Err(), ErrConnectionLost) {
			t.Errorf("Err = %v", c.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("oversized frame accepted")
	}
	if _, err := c.Env(testCtx(t)); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("call on a lost transport: %v", err)
	}
}

func TestStreamLimit(t *testing.T) {
	addr := echoServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	a := startAgent(t, func(s *Server) { s.MaxStreams = 2 })
	c := a.client(t)
	ctx := testCtx(t)
	for range 2 {
		conn, err := c.DialTCP(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
	}
	if _, err := c.DialTCP(ctx, addr); !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("third stream: %v", err)
	}
}

func TestAgentShutdownEndsClient(t *testing.T) {
	token := NewToken()
	srv := &Server{Handler: newFakePod(), TokenHashes: []TokenHash{HashToken(token)}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(testCtx(t), conn, Hello{SessionID: "s", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client did not notice the agent going")
	}
	if !errors.Is(c.Err(), ErrConnectionLost) {
		t.Errorf("Err = %v", c.Err())
	}
}

// An early dial's reply waits for the pod's first bytes and goes with
// them; a waiting dial's comes at once.
func TestEarlyDialReplyGoesWithThePodsBytes(t *testing.T) {
	speak := make(chan struct{})
	addr := echoServer(t, func(c net.Conn) {
		<-speak
		io.WriteString(c, "hello from the pod")
		c.Close()
	})
	a := startAgent(t, nil)
	c := a.client(t)
	for _, early := range []bool{false, true} {
		st, err := c.mux.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		if err := writeMessage(st, &StreamHeader{Kind: StreamDial, Network: "tcp", Address: addr, Early: early}, MaxHeaderSize); err != nil {
			t.Fatal(err)
		}
		st.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		var reply DialReply
		err = readMessage(st, &reply, MaxHeaderSize)
		if early {
			if !errors.Is(err, yamux.ErrTimeout) {
				t.Fatalf("early dial: the reply came before the pod's bytes (%v, %+v)", err, reply)
			}
			speak <- struct{}{}
			st.SetReadDeadline(time.Now().Add(10 * time.Second))
			err = readMessage(st, &reply, MaxHeaderSize)
		} else {
			speak <- struct{}{}
		}
		if err != nil || reply.Error != nil || reply.Remote != addr {
			t.Fatalf("early %v: reply %+v, %v", early, reply, err)
		}
		st.SetReadDeadline(time.Now().Add(10 * time.Second))
		rest, err := io.ReadAll(st)
		if err != nil || string(rest) != "hello from the pod" {
			t.Fatalf("early %v: after the reply %q, %v", early, rest, err)
		}
		st.Close()
	}
}

// An early dial returns before the agent answers: what is written at once
// reaches the pod's server after the dial, and a refusal is the first
// Read's error, with the pod's errno.
func TestDialTCPEarly(t *testing.T) {
	addr := echoServer(t, func(c net.Conn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Fprintf(c, "echo %s", line)
	})
	a := startAgent(t, nil)
	c := a.client(t)
	ctx := testCtx(t)

	conn, err := c.DialTCPEarly(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("sent before the answer\n")); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(conn)
	if err != nil || string(answer) != "echo sent before the answer\n" {
		t.Fatalf("answer %q, %v", answer, err)
	}
	if _, ok := conn.LocalAddr().(*net.TCPAddr); !ok {
		t.Errorf("LocalAddr after the answer: %T %v", conn.LocalAddr(), conn.LocalAddr())
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	refused, err := c.DialTCPEarly(ctx, closed)
	if err != nil {
		t.Fatalf("an early dial waits for nothing, yet: %v", err)
	}
	refused.Write([]byte("dropped with the refused dial\n"))
	for range 2 { // every Read reports it
		if _, err := refused.Read(make([]byte, 10)); !errors.Is(err, syscall.ECONNREFUSED) || !DialFailed(err) {
			t.Fatalf("Read of a refused early dial: %v (DialFailed %v)", err, DialFailed(err))
		}
	}
	refused.Close()
	if _, err := c.DialTCP(ctx, addr); err != nil {
		t.Errorf("the session after a refused early dial: %v", err)
	}
}

// A transport that breaks is no FIN: a connection's and a file's reader get
// an error wrapping ErrConnectionLost, not an EOF that would make what came
// so far look whole, and the pod's end of the connection is reset.
func TestTransportDropIsNoEOF(t *testing.T) {
	podRead := make(chan error, 1)
	addr := echoServer(t, func(c net.Conn) {
		c.Write([]byte("partial"))
		_, err := io.ReadAll(c) // until the helper's side ends
		podRead <- err
	})
	a := startAgent(t, nil)
	c := a.client(t)
	ctx := testCtx(t)
	conn, err := c.DialTCP(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.ReadFull(conn, make([]byte, len("partial"))); err != nil {
		t.Fatal(err)
	}
	file, _, err := c.Open(ctx, "/etc/large.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := io.ReadFull(file, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}

	c.mux.Close() // the port-forward breaks
	if _, err := io.ReadAll(conn); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("the connection's read after the drop: %v, want ErrConnectionLost", err)
	}
	if _, err := io.ReadAll(file); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("the file's read after the drop: %v, want ErrConnectionLost", err)
	}
	select {
	case err := <-podRead:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the pod's end read %v after the drop, want a reset", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the pod's end of the connection outlived the transport")
	}
}

// slowDialPod's dials to 10.0.0.1 wait for their context, and say when it
// ended.
type slowDialPod struct {
	*fakePod
	started chan struct{}
	ended   chan error
}

func (p *slowDialPod) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if strings.HasPrefix(address, "10.0.0.1:") {
		close(p.started)
		<-ctx.Done()
		p.ended <- ctx.Err()
		return nil, ctx.Err()
	}
	return p.fakePod.Dial(ctx, network, address)
}

// A helper that gives up on a dial (its caller's context ended) stops the
// agent's dial too, instead of leaving it to its timeout holding a stream.
func TestDialAbortCancelsThePodsDial(t *testing.T) {
	started, ended := make(chan struct{}), make(chan error, 1)
	a := startAgent(t, func(s *Server) {
		s.Handler = &slowDialPod{fakePod: s.Handler.(*fakePod), started: started, ended: ended}
	})
	c := a.client(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started // the agent dials: the caller gives up
		cancel()
	}()
	if _, err := c.DialTCP(ctx, "10.0.0.1:80"); !errors.Is(err, context.Canceled) {
		t.Fatalf("DialTCP: %v, want the caller's cancellation", err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the pod's dial ended with %v, want cancelled by the abort", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("the pod's dial went on after the helper's abort")
	}
}

// An abort that overtakes its stream's accept is kept for it, and only
// for ids that can still come.
func TestEarlyAborts(t *testing.T) {
	var e earlyAborts
	if e.accepted(1) {
		t.Fatal("stream 1 was never aborted")
	}
	e.note(5, 10)
	e.note(1, 10) // accepted before: its abort found it, or it is gone
	if e.accepted(3) || !e.accepted(5) {
		t.Fatal("the abort of stream 5, noted before its accept, was not applied")
	}
	if len(e.ids) != 0 {
		t.Errorf("ids left: %v", e.ids)
	}
	for id := uint32(7); id < 40; id += 2 {
		e.note(id, 10)
	}
	if len(e.ids) != 10 {
		t.Errorf("%d ids kept, want the bound of 10", len(e.ids))
	}
}

// stuckDNSPod's DNS answers only when its context ends, as a blackholed
// cluster DNS does.
type stuckDNSPod struct{ *fakePod }

func (stuckDNSPod) DNS(ctx context.Context, _ []byte) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// Slow requests filling every slot don't hold up a ping behind them (the
// helper would take a healthy transport for dead), and a request that
// waited out its timeout for a slot fails without running.
func TestSlowRequestsDontBlockPing(t *testing.T) {
	a := startAgent(t, func(s *Server) {
		s.MaxRequests = 2
		s.Handler = stuckDNSPod{s.Handler.(*fakePod)}
	})
	c := a.client(t)
	query := []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}
	for range 3 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			c.DNS(ctx, query)
		}()
	}
	time.Sleep(200 * time.Millisecond) // all three sent: two slots taken, one waiting
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		t.Fatalf("ping behind slow requests: %v", err)
	}
	// A short request queued behind the stuck ones gets its timeout, from
	// when it arrived.
	short, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	start := time.Now()
	if _, err := c.DNS(short, query); err == nil {
		t.Fatal("a request with no slot free answered")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the queued request took %s to fail", took)
	}
}

// stuckFilePod's files are read with a read that does not return, as on a
// hung NFS mount: closing the file does not wake it.
type stuckFilePod struct {
	*fakePod
	release chan struct{}
}

type stuckReader struct{ release chan struct{} }

func (r stuckReader) Read([]byte) (int, error) { <-r.release; return 0, io.EOF }
func (r stuckReader) Close() error             { return nil }

func (p stuckFilePod) Open(context.Context, string) (io.ReadCloser, FileInfo, error) {
	return stuckReader{p.release}, FileInfo{Mode: ModeRegular, Size: 1}, nil
}

// A stream stuck in a read that never returns does not keep its session
// attached (nor the agent from ever stopping) after the helper left.
func TestStuckReadDoesNotHoldTheSession(t *testing.T) {
	old := stuckGrace
	stuckGrace = 300 * time.Millisecond
	t.Cleanup(func() { stuckGrace = old })
	release := make(chan struct{})
	a := startAgent(t, func(s *Server) { s.Handler = stuckFilePod{s.Handler.(*fakePod), release} })
	t.Cleanup(func() { close(release) })
	c := a.client(t)
	rc, _, err := c.Open(context.Background(), "/hung/file")
	if err != nil {
		t.Fatal(err)
	}
	go io.ReadAll(rc)
	time.Sleep(100 * time.Millisecond) // the agent's copy is in the stuck read
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for a.srv.Sessions() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the session is still held 5 s after the helper closed it")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bigDirPod lists a directory of many long names that JSON escapes,
// counting its reads.
type bigDirPod struct {
	*fakePod
	reads *atomic.Int32
}

func (p bigDirPod) ReadDir(_ context.Context, dir string) ([]DirEntry, error) {
	p.reads.Add(1)
	out := make([]DirEntry, 3000)
	for i := range out {
		out[i] = DirEntry{Name: fmt.Sprintf("%05d", i) + strings.Repeat("<", 250), Type: ModeRegular}
	}
	return out, nil
}

// A directory listed in several pages is read once, not once a page, and
// no page outgrows a message, whatever its names cost in JSON.
func TestReadDirPagesReadOnce(t *testing.T) {
	var reads atomic.Int32
	a := startAgent(t, func(s *Server) { s.Handler = bigDirPod{s.Handler.(*fakePod), &reads} })
	c := a.client(t)
	entries, err := c.ReadDir(context.Background(), "/many")
	if err != nil || len(entries) != 3000 || entries[2999].Name[:5] != "02999" {
		t.Fatalf("ReadDir: %d entries, %v", len(entries), err)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("the directory was read %d times for one listing, want 1", n)
	}
	// A new listing reads it anew.
	if _, err := c.ReadDir(context.Background(), "/many"); err != nil || reads.Load() != 2 {
		t.Errorf("a second listing: %v, %d reads", err, reads.Load())
	}
}

// panickyPod's Open panics, as a handler bug would.
type panickyPod struct{ *fakePod }

func (panickyPod) Open(context.Context, string) (io.ReadCloser, FileInfo, error) {
	panic("a handler bug")
}

// A panic in a data stream's handler breaks that stream only: the agent
// and the session go on.
func TestStreamPanicBreaksOnlyItsStream(t *testing.T) {
	a := startAgent(t, func(s *Server) { s.Handler = panickyPod{s.Handler.(*fakePod)} })
	c := a.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if rc, _, err := c.Open(ctx, "/etc/hostname"); err == nil {
		if _, err := io.ReadAll(rc); err == nil {
			t.Error("a stream whose handler panicked read as complete")
		}
	}
	if _, err := c.Stat(ctx, "/etc/hostname"); err != nil {
		t.Errorf("the session after a stream's panic: %v", err)
	}
}
