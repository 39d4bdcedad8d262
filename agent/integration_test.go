//go:build integration && linux

// The integration test plays a pod with a network namespace: the real
// agent binary runs on the host against a process inside it, and a
// protocol.Client talks to the agent over loopback. Root is required.
//
//	go test -tags integration ./agent/
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/protocol"
	"github.com/doppel-dev/doppel/test/integration/podns"
	"golang.org/x/net/dns/dnsmessage"
)

// The test binary doubles as the pod's process: started with this
// variable set, it serves the pod's TCP, UDP and DNS instead of testing.
const podModeEnv = "DOPPEL_IT_POD_ADDR"

func TestMain(m *testing.M) {
	if addr := os.Getenv(podModeEnv); addr != "" {
		if err := runPod(addr); err != nil {
			fmt.Fprintln(os.Stderr, "pod:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	podTCPPort    = 7001
	podUDPPort    = 7002
	podClosedPort = 7009
	podHostname   = "pod-under-test"
	podEnvVar     = "POD_ONLY_VAR=only-the-pod-has-this"
	podName       = "only-in-pod.test.svc.cluster.local."
	podBigName    = "big.test.svc.cluster.local."
	podDir        = "/srv/doppel-it" // a tmpfs in the pod's mount namespace only
)

// runPod is the pod: hostname in its own UTS namespace, files on a tmpfs
// in its own mount namespace, servers on its own address. It prints
// "ready PID" and runs until stdin closes.
func runPod(addr string) error {
	if err := syscall.Sethostname([]byte(podHostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", podDir, "tmpfs", 0, "size=1m"); err != nil {
		return fmt.Errorf("mounting the pod's tmpfs: %w", err)
	}
	for name, content := range map[string]string{
		"pod-only.txt": "a file only the pod has\n",
		"dir/a":        "", "dir/b": "", "dir/c": "",
	} {
		p := filepath.Join(podDir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			return err
		}
	}
	if err := os.Symlink("/srv/doppel-it/pod-only.txt", filepath.Join(podDir, "dir/link")); err != nil {
		return err
	}

	tcp, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(podTCPPort)))
	if err != nil {
		return err
	}
	go serveGreeting(tcp)
	udp, err := net.ListenPacket("udp", net.JoinHostPort(addr, strconv.Itoa(podUDPPort)))
	if err != nil {
		return err
	}
	go serveUDPEcho(udp)
	dnsUDP, err := net.ListenPacket("udp", net.JoinHostPort(addr, "53"))
	if err != nil {
		return err
	}
	dnsTCP, err := net.Listen("tcp", net.JoinHostPort(addr, "53"))
	if err != nil {
		return err
	}
	podIP := net.ParseIP(addr).To4()
	go serveDNSUDP(dnsUDP, podIP)
	go serveDNSTCP(dnsTCP, podIP)

	fmt.Printf("ready %d\n", os.Getpid())
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// serveGreeting answers one line with who asked: the peer address shows
// which namespace the connection came from.
func serveGreeting(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			line, _ := bufio.NewReader(c).ReadString('\n')
			fmt.Fprintf(c, "pod got %q from %s\n", strings.TrimSpace(line), c.RemoteAddr())
		}()
	}
}

func serveUDPEcho(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
	}
}

func serveDNSUDP(pc net.PacketConn, podIP net.IP) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if out := dnsAnswer(buf[:n], false, podIP); out != nil {
			pc.WriteTo(out, from)
		}
	}
}

func serveDNSTCP(l net.Listener, podIP net.IP) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			var hdr [2]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			q := make([]byte, binary.BigEndian.Uint16(hdr[:]))
			if _, err := io.ReadFull(c, q); err != nil {
				return
			}
			if out := dnsAnswer(q, true, podIP); out != nil {
				c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...))
			}
		}()
	}
}

// dnsAnswer is the pod's zone: podName is the pod's address, podBigName
// has 100 addresses (too many for UDP: truncated there), the rest NXDOMAIN.
func dnsAnswer(query []byte, overTCP bool, podIP net.IP) []byte {
	var q dnsmessage.Message
	if err := q.Unpack(query); err != nil || len(q.Questions) != 1 {
		return nil
	}
	name := q.Questions[0].Name.String()
	a := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: q.Header.ID, Response: true, Authoritative: true},
		Questions: q.Questions,
	}
	record := func(ip [4]byte) dnsmessage.Resource {
		return dnsmessage.Resource{
			Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5},
			Body:   &dnsmessage.AResource{A: ip},
		}
	}
	switch {
	case name == podName && q.Questions[0].Type == dnsmessage.TypeA:
		a.Answers = append(a.Answers, record([4]byte(podIP)))
	case name == podBigName && !overTCP:
		a.Header.Truncated = true
	case name == podBigName:
		for i := range 100 {
			a.Answers = append(a.Answers, record([4]byte{10, 77, 255, byte(i)}))
		}
	case name == podName:
		// Other types of a name that exists: an empty answer.
	default:
		a.Header.RCode = dnsmessage.RCodeNameError
	}
	out, err := a.Pack()
	if err != nil {
		return nil
	}
	return out
}

// --- the host side ---

// run runs a command that must succeed.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// cleanup runs a command at the end of the test, whatever happened.
func cleanup(t *testing.T, name string, args ...string) {
	t.Cleanup(func() {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Logf("cleanup %s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
	})
}

// freeSubnet picks 10.77.X.0/24 that no address or route on the host uses.
func freeSubnet(t *testing.T) int {
	t.Helper()
	addrs, _ := exec.Command("ip", "-o", "addr").Output()
	routes, _ := exec.Command("ip", "route").Output()
	used := string(addrs) + string(routes)
	for range 50 {
		x := 1 + rand.IntN(250)
		if !strings.Contains(used, fmt.Sprintf("10.77.%d.", x)) {
			return x
		}
	}
	t.Fatal("no free 10.77.X.0/24")
	return 0
}

type pod struct {
	ns     string
	ip     string
	pid    int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *podns.SyncBuffer
}

// startPod builds the namespace "pod" and starts its process.
func startPod(t *testing.T) *pod {
	t.Helper()
	suffix := fmt.Sprintf("%d%04d", os.Getpid()%100000, rand.IntN(10000))
	ns := "doppel-it-" + suffix
	host, peer := "dph"+suffix, "dpp"+suffix // at most 15 characters
	x := freeSubnet(t)
	hostIP, podIP := fmt.Sprintf("10.77.%d.1", x), fmt.Sprintf("10.77.%d.2", x)

	run(t, "ip", "netns", "add", ns)
	cleanup(t, "ip", "netns", "del", ns)
	run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() }) // gone with the netns already, normally
	run(t, "ip", "link", "set", peer, "netns", ns)
	run(t, "ip", "addr", "add", hostIP+"/24", "dev", host)
	run(t, "ip", "link", "set", host, "up")
	run(t, "ip", "-n", ns, "addr", "add", podIP+"/24", "dev", peer)
	run(t, "ip", "-n", ns, "link", "set", peer, "up")
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")

	// ip netns exec bind-mounts /etc/netns/NS/* over /etc/* in the
	// process's private mount namespace: the pod's resolv.conf.
	etc := filepath.Join("/etc/netns", ns)
	createdParent := false
	if _, err := os.Stat("/etc/netns"); errors.Is(err, os.ErrNotExist) {
		createdParent = true
	}
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(etc)
		if createdParent {
			os.Remove("/etc/netns")
		}
	})
	resolv := fmt.Sprintf("search test.svc.cluster.local svc.cluster.local cluster.local\nnameserver %s\noptions ndots:5 timeout:2\n", podIP)
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(resolv), 0o644); err != nil {
		t.Fatal(err)
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "unshare", "--uts", self)
	cmd.Env = []string{podModeEnv + "=" + podIP, podEnvVar, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &pod{ns: ns, ip: podIP, cmd: cmd, stdin: stdin, stderr: &podns.SyncBuffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill() // by PID: the process this test started
		cmd.Wait()
		if t.Failed() {
			t.Logf("pod stderr:\n%s", p.stderr)
		}
	})
	line, err := podns.ReadLine(stdout, 10*time.Second)
	if err != nil {
		t.Fatalf("pod did not get ready: %v\n%s", err, p.stderr)
	}
	if _, err := fmt.Sscanf(line, "ready %d", &p.pid); err != nil {
		t.Fatalf("pod said %q", line)
	}
	if p.pid != cmd.Process.Pid {
		t.Logf("pod process %d, started as %d", p.pid, cmd.Process.Pid)
	}
	return p
}

type agentProc struct {
	addr   string
	cmd    *exec.Cmd
	stderr *podns.SyncBuffer
	exited chan struct{}
	err    error
}

// startAgent runs the agent binary against the pod and waits for its
// "listening on" line.
func startAgent(t *testing.T, bin string, p *pod, tokenHash string, extra ...string) *agentProc {
	t.Helper()
	args := append([]string{"serve", "--target-pid", strconv.Itoa(p.pid), "--listen", "127.0.0.1:0",
		"--token-sha256", tokenHash, "--log-level", "debug"}, extra...)
	cmd := exec.Command(bin, args...)
	a := &agentProc{cmd: cmd, stderr: &podns.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = a.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		a.err = cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // by PID: the agent this test started
		<-a.exited
		if t.Failed() {
			t.Logf("agent stderr:\n%s", a.stderr)
		}
	})
	line, err := podns.ReadLine(stdout, 10*time.Second)
	if err != nil || !strings.HasPrefix(line, "listening on ") {
		t.Fatalf("agent first line %q, %v\n%s", line, err, a.stderr)
	}
	a.addr = strings.TrimPrefix(line, "listening on ")
	return a
}

// waitExit waits for the agent to exit by itself and returns its code.
func (a *agentProc) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-a.exited:
	case <-time.After(within):
		t.Fatalf("the agent still runs after %v", within)
	}
	var ee *exec.ExitError
	if errors.As(a.err, &ee) {
		return ee.ExitCode()
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	return 0
}

func dialAgent(t *testing.T, addr string, hello protocol.Hello) (*protocol.Client, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return protocol.Dial(ctx, conn, hello)
}

func dnsQuery(t *testing.T, name string) []byte {
	t.Helper()
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: uint16(rand.IntN(65536)), RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAgentInNetnsPod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this integration test needs root (network namespaces, mounts)")
	}
	bin, err := podns.BuildAgent(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := startPod(t)
	token := protocol.NewToken()
	agent := startAgent(t, bin, p, protocol.HashToken(token).String(), "--idle-timeout", "1s", "--resume-grace", "1s")
	hello := protocol.Hello{SessionID: "it-" + strconv.Itoa(os.Getpid()), Token: token,
		Client: protocol.ClientInfo{User: "it", Host: "host", Version: "test", PID: os.Getpid()}}
	c, err := dialAgent(t, agent.addr, hello)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("env", func(t *testing.T) {
		env, err := c.Env(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, kv := range env {
			found = found || kv == podEnvVar
		}
		if !found {
			t.Errorf("%s not in %q", podEnvVar, env)
		}
	})

	t.Run("hostname", func(t *testing.T) {
		if h, err := c.Hostname(ctx); err != nil || h != podHostname {
			t.Errorf("Hostname = %q, %v", h, err)
		}
	})

	t.Run("dns", func(t *testing.T) {
		q := dnsQuery(t, podName)
		ans, err := c.DNS(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var m dnsmessage.Message
		if err := m.Unpack(ans); err != nil {
			t.Fatal(err)
		}
		if m.Header.ID != binary.BigEndian.Uint16(q) || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 {
			t.Fatalf("answer %+v", m)
		}
		if got := net.IP(m.Answers[0].Body.(*dnsmessage.AResource).A[:]).String(); got != p.ip {
			t.Errorf("%s is %s, want %s", podName, got, p.ip)
		}

		ans, err = c.DNS(ctx, dnsQuery(t, "not-there.test.svc.cluster.local."))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Unpack(ans); err != nil || m.RCode != dnsmessage.RCodeNameError {
			t.Errorf("NXDOMAIN came back as %v (%v)", m.RCode, err)
		}

		ans, err = c.DNS(ctx, dnsQuery(t, podBigName))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Unpack(ans); err != nil || m.Truncated || len(m.Answers) != 100 {
			t.Errorf("big answer: truncated %v, %d answers (%v)", m.Truncated, len(m.Answers), err)
		}
	})

	t.Run("tcp", func(t *testing.T) {
		conn, err := c.DialTCP(ctx, net.JoinHostPort(p.ip, strconv.Itoa(podTCPPort)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if ip := conn.LocalAddr().(*net.TCPAddr).IP.String(); ip != p.ip {
			t.Errorf("the pod-side socket is %s, want the pod's %s", conn.LocalAddr(), p.ip)
		}
		fmt.Fprintf(conn, "hello from the helper\n")
		conn.(interface{ CloseWrite() error }).CloseWrite()
		answer, err := io.ReadAll(conn)
		if err != nil {
			t.Fatal(err)
		}
		// The connection came from the pod's own address: it was made
		// inside the namespace (from the host it would come from .1).
		want := fmt.Sprintf("pod got %q from %s\n", "hello from the helper", conn.LocalAddr())
		if string(answer) != want {
			t.Errorf("answer %q, want %q", answer, want)
		}
	})

	t.Run("tcp refused", func(t *testing.T) {
		_, err := c.DialTCP(ctx, net.JoinHostPort(p.ip, strconv.Itoa(podClosedPort)))
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial to a closed port: %v", err)
		}
	})

	t.Run("udp", func(t *testing.T) {
		conn, err := c.DialUDP(ctx, net.JoinHostPort(p.ip, strconv.Itoa(podUDPPort)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, msg := range []string{"one", "two"} {
			conn.Write([]byte(msg))
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 100)
			n, err := conn.Read(buf)
			if err != nil || string(buf[:n]) != "echo:"+msg {
				t.Fatalf("read %q, %v", buf[:n], err)
			}
		}
	})

	t.Run("files", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(podDir, "pod-only.txt")); err == nil {
			t.Fatal("the host sees the pod's file: the test proves nothing")
		}
		r, fi, err := c.Open(ctx, podDir+"/dir/link")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(r)
		r.Close()
		if string(data) != "a file only the pod has\n" || fi.Size != int64(len(data)) || fi.FileMode() != 0o640 {
			t.Errorf("read %q, stat %+v", data, fi)
		}
		entries, err := c.ReadDir(ctx, podDir+"/dir")
		var names []string
		for _, e := range entries {
			names = append(names, e.Name)
		}
		if err != nil || strings.Join(names, ",") != "a,b,c,link" {
			t.Errorf("ReadDir = %v, %v", names, err)
		}
		if target, err := c.Readlink(ctx, podDir+"/dir/link"); err != nil || target != podDir+"/pod-only.txt" {
			t.Errorf("Readlink = %q, %v", target, err)
		}
		r, _, err = c.Open(ctx, "/etc/resolv.conf")
		if err != nil {
			t.Fatal(err)
		}
		data, _ = io.ReadAll(r)
		r.Close()
		if !strings.Contains(string(data), "nameserver "+p.ip) {
			t.Errorf("the pod's resolv.conf reads %q", data)
		}
		if _, err := c.Stat(ctx, podDir+"/none"); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("Stat(missing) = %v", err)
		}
	})

	t.Run("bad token", func(t *testing.T) {
		h := hello
		h.SessionID += "-bad"
		h.Token = protocol.NewToken()
		if _, err := dialAgent(t, agent.addr, h); !errors.Is(err, protocol.ErrUnauthorized) {
			t.Errorf("bad token: %v", err)
		}
	})

	t.Run("version mismatch", func(t *testing.T) {
		h := hello
		h.SessionID += "-future"
		h.Protocol = protocol.Version + 7
		_, err := dialAgent(t, agent.addr, h)
		if !errors.Is(err, protocol.ErrVersionMismatch) {
			t.Fatalf("version mismatch: %v", err)
		}
		msg := err.Error()
		if !strings.Contains(msg, fmt.Sprintf("version %d", protocol.Version)) ||
			!strings.Contains(msg, fmt.Sprintf("version %d", protocol.Version+7)) {
			t.Errorf("the error does not name both versions: %s", msg)
		}
	})

	t.Run("resume", func(t *testing.T) {
		h := hello
		h.Resume = true
		c2, err := dialAgent(t, agent.addr, h)
		if err != nil {
			t.Fatal(err)
		}
		if !c2.Resumed() {
			t.Error("not resumed")
		}
		c = c2 // the first transport was replaced
		if _, err := c.Hostname(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("token file", func(t *testing.T) {
		// A shared agent: a second token is accepted once its hash appears
		// in the annotations file, which is replaced by a symlink swap as
		// the kubelet does.
		dir := t.TempDir()
		write := func(gen int, content string) {
			d := filepath.Join(dir, fmt.Sprintf("..gen%d", gen))
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "annotations"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(dir, "..tmp"))
			if err := os.Symlink(filepath.Base(d), filepath.Join(dir, "..tmp")); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(dir, "..tmp"), filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
		}
		write(1, `doppel.dev/port="7463"`)
		if err := os.Symlink("..data/annotations", filepath.Join(dir, "annotations")); err != nil {
			t.Fatal(err)
		}
		a := startAgent(t, bin, p, protocol.HashToken(token).String(), "--token-file", filepath.Join(dir, "annotations"))
		other := protocol.NewToken()
		h := hello
		h.SessionID += "-joiner"
		h.Token = other
		if _, err := dialAgent(t, a.addr, h); !errors.Is(err, protocol.ErrUnauthorized) {
			t.Fatalf("before the annotation: %v", err)
		}
		oh := protocol.HashToken(other)
		write(2, fmt.Sprintf("doppel.dev/port=\"7463\"\n%s=%q", oh.Annotation(), oh.String()))
		c2, err := dialAgent(t, a.addr, h)
		if err != nil {
			t.Fatalf("after the annotation: %v", err)
		}
		defer c2.Close()
		c1, err := dialAgent(t, a.addr, hello)
		if err != nil {
			t.Fatal(err)
		}
		defer c1.Close()
		for _, c := range []*protocol.Client{c1, c2} {
			if host, err := c.Hostname(ctx); err != nil || host != podHostname {
				t.Errorf("hostname %q, %v", host, err)
			}
		}
	})

	// The last session ends: the agent exits after its idle window.
	c.Close()
	if code := agent.waitExit(t, 10*time.Second); code != 0 {
		t.Errorf("agent exit code %d after the idle window", code)
	}
	if !strings.Contains(agent.stderr.String(), "no session for the idle window") {
		t.Errorf("agent log does not say why it stopped:\n%s", agent.stderr)
	}

	t.Run("startup window", func(t *testing.T) {
		a := startAgent(t, bin, p, protocol.HashToken(token).String(), "--startup-timeout", "1s")
		start := time.Now()
		if code := a.waitExit(t, 10*time.Second); code != 0 {
			t.Errorf("exit code %d", code)
		}
		if took := time.Since(start); took < 900*time.Millisecond {
			t.Errorf("exited after %v", took)
		}
	})

	t.Run("target exits", func(t *testing.T) {
		a := startAgent(t, bin, p, protocol.HashToken(token).String())
		p.stdin.Close()
		p.cmd.Process.Kill()
		if code := a.waitExit(t, 10*time.Second); code != exitTargetExited {
			t.Errorf("exit code %d, want %d", code, exitTargetExited)
		}
	})
}
