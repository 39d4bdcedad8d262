//go:build integration && linux

package redirect

import (
	"bufio"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Locking the main goroutine to the main thread keeps the namespace
// threads below off it (see agent/target/mainthread_linux.go).
func init() { runtime.LockOSThread() }

const (
	podPort    = 8080  // the "original" server
	listenPort = 15001 // the agent's redirect listener
	testMark   = 0x6d9 // SO_MARK of the agent's passthrough dials
	ioTimeout  = 2 * time.Second
)

// nsThread is a goroutine locked to a thread in a network namespace, like
// target.Target's: it implements Netns.
type nsThread struct{ calls chan func() }

func enterNetns(path string) (*nsThread, error) {
	t := &nsThread{calls: make(chan func())}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		ready <- err
		if err != nil {
			return
		}
		for f := range t.calls {
			f()
		}
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("entering %s: %w", path, err)
	}
	return t, nil
}

func (t *nsThread) InNetns(f func() error) error {
	done := make(chan error, 1)
	t.calls <- func() { done <- f() }
	return <-done
}

func (t *nsThread) close() { close(t.calls) }

// nsPrefix starts the names of the namespaces the tests create; the test
// process's pid follows, so leftovers of killed runs can be removed.
const nsPrefix = "drt-"

// testPod is a network namespace with a veth to the host: 10.251.X.2 and
// fd00:251:X::2 in the pod, .1 and ::1 on the host, lo up; an original
// server on :8080 and a redirect listener on :15001 (both dual-stack) in it.
type testPod struct {
	name, path string
	ip4, ip6   netip.Addr // the pod's
	ns         *nsThread

	mu    sync.Mutex
	conns []net.Conn
}

func newPod(t *testing.T) *testPod {
	t.Helper()
	removeStale()
	x, err := freeSubnet()
	if err != nil {
		t.Fatal(err)
	}
	suffix := fmt.Sprintf("%d-%04d", os.Getpid(), mrand.IntN(10000))
	ifs := fmt.Sprintf("%05d", mrand.IntN(100000))
	p := &testPod{name: nsPrefix + suffix, path: "/var/run/netns/" + nsPrefix + suffix,
		ip4: netip.MustParseAddr(fmt.Sprintf("10.251.%d.2", x)),
		ip6: netip.MustParseAddr(fmt.Sprintf("fd00:251:%x::2", x))}
	hostIf, podIf := "drh"+ifs, "drp"+ifs
	mustRun(t, "ip", "netns", "add", p.name)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", p.name).Run()
		exec.Command("ip", "link", "del", hostIf).Run() // normally gone with the namespace
	})
	for _, args := range [][]string{
		{"link", "add", hostIf, "type", "veth", "peer", "name", podIf},
		{"link", "set", podIf, "netns", p.name},
		{"addr", "add", fmt.Sprintf("10.251.%d.1/24", x), "dev", hostIf},
		{"addr", "add", fmt.Sprintf("fd00:251:%x::1/64", x), "dev", hostIf, "nodad"},
		{"link", "set", hostIf, "up"},
		{"-n", p.name, "addr", "add", p.ip4.String() + "/24", "dev", podIf},
		{"-n", p.name, "addr", "add", p.ip6.String() + "/64", "dev", podIf, "nodad"},
		{"-n", p.name, "link", "set", podIf, "up"},
		{"-n", p.name, "link", "set", "lo", "up"},
	} {
		mustRun(t, "ip", args...)
	}
	if p.ns, err = enterNetns(p.path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.ns.close)
	p.serve(t, podPort, func(c net.Conn) string { return "original" })
	p.serve(t, listenPort, func(c net.Conn) string {
		od, err := OriginalDst(c)
		if err != nil {
			return "redirect error " + err.Error()
		}
		return "redirect " + od.String()
	})
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

// serve listens on [::]:port in the pod; each connection gets greeting(c)
// as a line, then "echo LINE" for each line.
func (p *testPod) serve(t *testing.T, port int, greeting func(net.Conn) string) {
	t.Helper()
	var l net.Listener
	err := p.ns.InNetns(func() error {
		var err error
		l, err = net.Listen("tcp", "[::]:"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.track(c)
			go func() {
				defer c.Close()
				if _, err := fmt.Fprintln(c, greeting(c)); err != nil {
					return
				}
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintln(c, "echo "+sc.Text()); err != nil {
						return
					}
				}
			}()
		}
	}()
}

func (p *testPod) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, c)
}

// dialOut connects from the host, through the veth.
func (p *testPod) dialOut(t *testing.T, ap netip.AddrPort) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", ap.String(), ioTimeout)
	if err != nil {
		t.Fatalf("dial %v from outside: %v", ap, err)
	}
	p.track(c)
	return c
}

// dialIn connects from inside the pod, with SO_MARK mark unless it is 0.
func (p *testPod) dialIn(t *testing.T, ap netip.AddrPort, mark uint32) net.Conn {
	t.Helper()
	var c net.Conn
	err := p.ns.InNetns(func() error {
		d := net.Dialer{Timeout: ioTimeout}
		if mark != 0 {
			d.Control = MarkControl(mark)
		}
		var err error
		c, err = d.Dial("tcp", ap.String())
		return err
	})
	if err != nil {
		t.Fatalf("dial %v in the pod (mark %#x): %v", ap, mark, err)
	}
	p.track(c)
	return c
}

// greeting reads the first line the server sent.
func greeting(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the greeting on %v->%v: %v", c.LocalAddr(), c.RemoteAddr(), err)
	}
	return strings.TrimSuffix(line, "\n")
}

func expectOriginal(t *testing.T, c net.Conn) {
	t.Helper()
	if g := greeting(t, c); g != "original" {
		t.Errorf("%v->%v reached %q, want the original server", c.LocalAddr(), c.RemoteAddr(), g)
	}
}

func expectRedirect(t *testing.T, c net.Conn, orig netip.AddrPort) {
	t.Helper()
	if g, want := greeting(t, c), "redirect "+orig.String(); g != want {
		t.Errorf("%v->%v reached %q, want %q", c.LocalAddr(), c.RemoteAddr(), g, want)
	}
}

// echo checks the connection still works end to end.
func echo(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := fmt.Fprintln(c, "ping"); err != nil {
		t.Errorf("%s: write: %v", what, err)
		return
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "echo ping\n" {
		t.Errorf("%s: echo answered %q, %v", what, line, err)
	}
}

// expectReset checks the connection was reset.
func expectReset(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(ioTimeout))
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("%s: read after Flush: %v, want a reset", what, err)
	}
}

// nsExec runs a command in the pod's namespace and returns its output.
func (p *testPod) nsExec(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", p.name, name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s in the pod: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func ap(a netip.Addr, port int) netip.AddrPort { return netip.AddrPortFrom(a, uint16(port)) }

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.IPv6Loopback()
)

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// freeSubnet picks X for 10.251.X.0/24 that no address or route uses.
func freeSubnet() (int, error) {
	addrs, _ := exec.Command("ip", "-o", "addr").Output()
	routes, _ := exec.Command("ip", "route").Output()
	used := string(addrs) + string(routes)
	for range 50 {
		x := 1 + mrand.IntN(250)
		if !strings.Contains(used, fmt.Sprintf("10.251.%d.", x)) {
			return x, nil
		}
	}
	return 0, errors.New("no free 10.251.X.0/24")
}

// removeStale deletes the namespaces of test processes that are gone.
func removeStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(f[0], nsPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
}
