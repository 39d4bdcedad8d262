//go:build integration && linux

package layer_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/layer"
	"github.com/doppel-dev/doppel/layer/launcher"
	"github.com/doppel-dev/doppel/layer/seccomp"
)

func TestMain(m *testing.M) {
	launcher.Main()
	if os.Geteuid() == 0 {
		isolateNetwork()
	}
	os.Exit(m.Run())
}

// isolateNetwork re-executes the test binary in a network namespace of its
// own with only loopback up, so that nothing a program under test does can
// leave the machine, whatever the layer decides.
func isolateNetwork() {
	const marker = "DOPPEL_LAYER_TEST_NETNS"
	if os.Getenv(marker) == "" {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			fmt.Fprintln(os.Stderr, "unshare(CLONE_NEWNET):", err)
			os.Exit(1)
		}
		err := syscall.Exec("/proc/self/exe", os.Args, append(os.Environ(), marker+"=1"))
		fmt.Fprintln(os.Stderr, "re-exec in a network namespace:", err)
		os.Exit(1)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		var ifr *unix.Ifreq
		if ifr, err = unix.NewIfreq("lo"); err == nil {
			ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
			err = unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
		}
		unix.Close(fd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bring up lo:", err)
		os.Exit(1)
	}
}

// Destinations the programs dial. They are never reached: the handler
// redirects them to loopback servers (or refuses them) before any packet
// leaves.
var (
	remoteHTTP    = netip.MustParseAddrPort("10.77.0.1:80")
	remoteHTTP2   = netip.MustParseAddrPort("192.0.2.10:80")
	remoteRefused = netip.MustParseAddrPort("192.0.2.11:80")
	remoteUDP     = netip.MustParseAddrPort("10.77.0.53:5353")
)

// requireRoot fails (never skips) the test when a prerequisite is missing.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the layer's integration tests need root")
	}
}

func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("prerequisite %s missing: %v", name, err)
	}
	return p
}

// testHandler redirects by destination and serves files from maps.
type testHandler struct {
	mu        sync.Mutex
	routes    map[netip.AddrPort]layer.ConnectVerdict
	connects  []layer.ConnectRequest
	listening []listenEvent
	files     map[string]string // path -> content served
	notFound  map[string]bool
	skip      func(layer.Process) bool
	connected []netip.AddrPort
	// unexpected records connects to non-loopback destinations that had no
	// route: they are refused so that nothing leaves the machine.
	unexpected []netip.AddrPort
}

type listenEvent struct {
	proto             layer.Proto
	requested, actual netip.AddrPort
	exe               string
}

func newHandler() *testHandler {
	return &testHandler{routes: map[netip.AddrPort]layer.ConnectVerdict{}, files: map[string]string{}, notFound: map[string]bool{}}
}

func (h *testHandler) redirect(dst, to netip.AddrPort) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.routes[dst] = layer.ConnectVerdict{Action: layer.Redirect, Redirect: to, Connected: func(local netip.AddrPort) {
		h.mu.Lock()
		h.connected = append(h.connected, local)
		h.mu.Unlock()
	}}
}

func (h *testHandler) refuse(dst netip.AddrPort) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.routes[dst] = layer.ConnectVerdict{Action: layer.Fail, Errno: syscall.ECONNREFUSED}
}

func (h *testHandler) Skip(p layer.Process) bool {
	if h.skip != nil {
		return h.skip(p)
	}
	return false
}

func (h *testHandler) Connect(ctx context.Context, r layer.ConnectRequest) layer.ConnectVerdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.connects = append(h.connects, r)
	if v, ok := h.routes[r.Dst]; ok {
		return v
	}
	if !r.Dst.Addr().IsLoopback() {
		h.unexpected = append(h.unexpected, r.Dst)
		return layer.ConnectVerdict{Action: layer.Fail, Errno: syscall.ENETUNREACH}
	}
	return layer.ConnectVerdict{Action: layer.Passthrough}
}

func (h *testHandler) Listening(p layer.Process, proto layer.Proto, requested, actual netip.AddrPort) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.listening = append(h.listening, listenEvent{proto, requested, actual, p.Exe})
}

func (h *testHandler) Open(ctx context.Context, p layer.Process, path string, flags int) layer.OpenVerdict {
	h.mu.Lock()
	content, ok := h.files[path]
	nf := h.notFound[path]
	h.mu.Unlock()
	switch {
	case nf:
		return layer.OpenVerdict{Action: layer.FileErrno, Errno: syscall.ENOENT}
	case ok:
		f, err := memfile(path, content)
		if err != nil {
			return layer.OpenVerdict{Action: layer.FileErrno, Errno: syscall.EIO}
		}
		return layer.OpenVerdict{Action: layer.FileServe, File: f}
	}
	return layer.OpenVerdict{}
}

func (h *testHandler) Stat(ctx context.Context, p layer.Process, path string, follow bool) layer.StatVerdict {
	h.mu.Lock()
	content, ok := h.files[path]
	nf := h.notFound[path]
	h.mu.Unlock()
	switch {
	case nf:
		return layer.StatVerdict{Action: layer.FileErrno, Errno: syscall.ENOENT}
	case ok:
		f, err := memfile(path, content)
		if err != nil {
			return layer.StatVerdict{Action: layer.FileErrno, Errno: syscall.EIO}
		}
		defer f.Close()
		var st unix.Stat_t
		unix.Fstat(int(f.Fd()), &st)
		st.Mode = unix.S_IFREG | 0o644
		return layer.StatVerdict{Action: layer.FileServe, Stat: st}
	}
	return layer.StatVerdict{}
}

// memfile is how a session serves a remote file: a memfd with its content.
func memfile(name, content string) (*os.File, error) {
	fd, err := unix.MemfdCreate(filepath.Base(name), unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return nil, err
	}
	f.Seek(0, io.SeekStart)
	return f, nil
}

func (h *testHandler) listens() []listenEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]listenEvent(nil), h.listening...)
}

// checkNoLeak fails the test if a program tried a non-loopback destination
// without a route.
func (h *testHandler) checkNoLeak(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.unexpected) > 0 {
		t.Errorf("unrouted remote destinations (refused): %v", h.unexpected)
	}
}

// result is the outcome of a program run under the layer.
type result struct {
	stdout, stderr string
	code           int
	stats          layer.Stats
}

type runOpts struct {
	filter         seccomp.Options
	env            []string
	dir            string
	stdin          *os.File
	forwardSignals bool
	// started, if set, is called once the program runs.
	started func(t *launcher.Tree)
}

// run runs argv under the launcher with h and waits for it.
func run(t testing.TB, h layer.Handler, o runOpts, argv ...string) result {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	stderr, _ := os.Create(filepath.Join(dir, "stderr"))
	defer stdout.Close()
	defer stderr.Close()
	var log *slog.Logger
	if os.Getenv("DOPPEL_LAYER_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	sup := layer.NewSupervisor(h, layer.Options{Filter: o.filter, Log: log})
	defer sup.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env := append(os.Environ(), o.env...)
	tree, err := launcher.Start(ctx, launcher.Spec{Filter: o.filter}, launcher.Command{
		Path: argv[0], Args: argv, Env: env, Dir: o.dir,
		Stdin: o.stdin, Stdout: stdout, Stderr: stderr, KillGrace: 500 * time.Millisecond,
		ForwardSignals: o.forwardSignals,
	}, sup.Serve)
	if err != nil {
		t.Fatalf("launch %v: %v", argv, err)
	}
	if o.started != nil {
		o.started(tree)
	}
	done := make(chan int, 1)
	go func() { done <- tree.Wait() }()
	var code int
	select {
	case code = <-done:
	case <-ctx.Done():
		tree.Kill()
		t.Fatalf("%v did not finish", argv)
	}
	out, _ := os.ReadFile(stdout.Name())
	errOut, _ := os.ReadFile(stderr.Name())
	r := result{stdout: string(out), stderr: string(errOut), code: code, stats: sup.Stats()}
	if _, bench := t.(*testing.B); !bench {
		t.Logf("%v: exit %d, %+v\nstdout: %s\nstderr: %s", argv, code, r.stats, out, errOut)
	}
	return r
}

// httpServer is a loopback HTTP server whose body names it.
func httpServer(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", name)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(l.Addr().String())
}

// udpEcho is a loopback UDP server that answers "echo:" + the datagram.
func udpEcho(t *testing.T) netip.AddrPort { return udpEchoAfter(t, 0) }

// udpEchoAfter is udpEcho answering each datagram after delay.
func udpEchoAfter(t *testing.T, delay time.Duration) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			time.Sleep(delay)
			c.WriteToUDP(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	return netip.MustParseAddrPort(c.LocalAddr().String())
}

var buildMu sync.Mutex
var built = map[string]string{}

// buildProbe builds testdata/probe once per variant ("static" or "cgo").
func buildProbe(t testing.TB, variant string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[variant]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "doppel-probe-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "probe-"+variant)
	cmd := exec.Command("go", "build", "-o", out, "./testdata/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if variant == "cgo" {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		cmd.Args = append(cmd.Args[:2], "-tags", "netcgo", "-o", out, "./testdata/probe")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build probe (%s): %v\n%s", variant, err, b)
	}
	if variant == "static" {
		if b, _ := exec.Command("file", out).Output(); len(b) > 0 && !strings.Contains(string(b), "statically linked") {
			t.Fatalf("static probe is not static: %s", b)
		}
	}
	built[variant] = out
	return out
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func wantContains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: %q does not contain %q", what, got, w)
		}
	}
}

func mustAddrPort(a net.Addr) netip.AddrPort { return netip.MustParseAddrPort(a.String()) }
