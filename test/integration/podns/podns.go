//go:build linux

// Package podns plays a Kubernetes pod on one machine, for the privileged
// integration tests: a network namespace with its own address on a veth,
// its own hostname (UTS namespace) and its own /etc (a private mount
// namespace), a target process (test/apps/podfixture) with a secret in its
// environment serving TCP, UDP, HTTP and DNS on the pod's address, and the
// real doppel-agent serving that pod on loopback.
//
// Everything started here is ended by Close, by PID; everything created is
// removed. The pod's process and the agent also die with the test process
// (parent-death signal, stdin closing), and Start removes the namespaces a
// killed earlier run of this package left behind.
//
// Root is required.
package podns

import (
	"bufio"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/doppel-dev/doppel/protocol"
)

// Module is the import path prefix of the repository's packages.
const Module = "github.com/doppel-dev/doppel"

// Names and ports the pod serves.
const (
	Domain    = "test.svc.cluster.local"
	ShortName = "only-in-pod"
	FQDN      = ShortName + "." + Domain
	// HostsName is in the pod's /etc/hosts only (it is no DNS name).
	HostsName = "pod-hosts-only"
	// UnknownName is NXDOMAIN in the pod, whatever the search list.
	UnknownName = "no-such-name-doppel"

	TCPPort    = 7001 // greeting: "hello from HOSTNAME to PEER\n", then echoes one line as "echo:LINE"
	UDPPort    = 7002 // echo: answers "echo:" + the datagram
	HTTPPort   = 7080 // "pod-http host=HOSTNAME path=PATH peer=PEER\n"
	ClosedPort = 7009 // nothing listens: ECONNREFUSED

	// PodinfoDir holds files only the pod has.
	PodinfoDir = "/etc/podinfo"
)

// PodinfoEntries are the names in PodinfoDir, sorted.
var PodinfoEntries = []string{"annotations", "config.d", "labels", "message"}

// Options change the pod.
type Options struct {
	// Fixture is the podfixture binary (Build it from FixturePkg).
	Fixture string
	// Hostname defaults to "pod-under-test".
	Hostname string
	// Env is added to the target process's environment.
	Env []string
}

// FixturePkg is the package of the pod's process.
const FixturePkg = Module + "/test/apps/podfixture"

// Pod is a running pod.
type Pod struct {
	NS       string // network namespace name (ip netns)
	IP       string // the pod's address
	HostIP   string // the host's end of the veth
	PID      int    // the target process, as the host sees it
	Hostname string
	// Secret is the value of POD_SECRET in the target's environment.
	Secret string
	// Message is the content of /etc/podinfo/message.
	Message string

	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stderr  *SyncBuffer
	hostIf  string
	scratch string
	once    sync.Once
	undo    []func()
}

// prefix starts every namespace this package creates; the creator's pid
// follows, so leftovers of dead runs can be told apart.
const prefix = "dpit-"

// Start creates the pod. Call Close when done (also on failure paths: Start
// cleans up after itself when it fails).
func Start(o Options) (p *Pod, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("podns needs root (network namespaces, mounts)")
	}
	if o.Fixture == "" {
		return nil, errors.New("podns: Options.Fixture is required")
	}
	for _, tool := range []string{"ip", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("podns needs %s: %w", tool, err)
		}
	}
	RemoveStale()
	if o.Hostname == "" {
		o.Hostname = "pod-under-test"
	}
	suffix := fmt.Sprintf("%d-%04d", os.Getpid(), mrand.IntN(10000))
	ifSuffix := fmt.Sprintf("%d%04d", os.Getpid()%100000, mrand.IntN(10000))
	p = &Pod{
		NS:       prefix + suffix,
		Hostname: o.Hostname,
		Secret:   "s3cr3t-" + randHex(6),
		Message:  "a file only the pod has: " + randHex(4) + "\n",
		hostIf:   "dih" + ifSuffix, // at most 15 characters
		stderr:   &SyncBuffer{},
	}
	defer func() {
		if err != nil {
			p.Close()
			p = nil
		}
	}()
	x, err := freeSubnet()
	if err != nil {
		return p, err
	}
	p.HostIP, p.IP = fmt.Sprintf("10.77.%d.1", x), fmt.Sprintf("10.77.%d.2", x)
	peerIf := "dip" + ifSuffix

	if err := run("ip", "netns", "add", p.NS); err != nil {
		return p, err
	}
	p.undo = append(p.undo, func() { run("ip", "netns", "del", p.NS) })
	if err := run("ip", "link", "add", p.hostIf, "type", "veth", "peer", "name", peerIf); err != nil {
		return p, err
	}
	// Normally gone with the namespace already.
	p.undo = append(p.undo, func() { exec.Command("ip", "link", "del", p.hostIf).Run() })
	for _, args := range [][]string{
		{"link", "set", peerIf, "netns", p.NS},
		{"addr", "add", p.HostIP + "/24", "dev", p.hostIf},
		{"link", "set", p.hostIf, "up"},
		{"-n", p.NS, "addr", "add", p.IP + "/24", "dev", peerIf},
		{"-n", p.NS, "link", "set", peerIf, "up"},
		{"-n", p.NS, "link", "set", "lo", "up"},
	} {
		if err := run("ip", args...); err != nil {
			return p, err
		}
	}

	if p.scratch, err = TempDir(); err != nil {
		return p, err
	}
	p.undo = append(p.undo, func() { os.RemoveAll(p.scratch) })

	// ip netns exec enters the namespace and a fresh mount namespace;
	// unshare adds the UTS namespace and keeps the mounts private.
	p.cmd = exec.Command("ip", "netns", "exec", p.NS, "unshare", "--uts", "--mount", "--propagation", "private",
		o.Fixture, "-addr", p.IP, "-hostname", p.Hostname, "-scratch", p.scratch, "-message", p.Message,
		"-domain", Domain, "-name", ShortName, "-hosts-name", HostsName,
		"-tcp", strconv.Itoa(TCPPort), "-udp", strconv.Itoa(UDPPort), "-http", strconv.Itoa(HTTPPort))
	p.cmd.Env = append([]string{"POD_SECRET=" + p.Secret, "POD_NAME=" + p.Hostname,
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}, o.Env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.cmd.Stderr = p.stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return p, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return p, err
	}
	if err := p.cmd.Start(); err != nil {
		return p, err
	}
	line, err := ReadLine(stdout, 15*time.Second)
	if err != nil {
		return p, fmt.Errorf("the pod did not get ready: %v\n%s", err, p.stderr)
	}
	if _, err := fmt.Sscanf(line, "ready %d", &p.PID); err != nil {
		return p, fmt.Errorf("the pod said %q\n%s", line, p.stderr)
	}
	go io.Copy(io.Discard, stdout)
	// The host must not see what the pod has.
	if _, err := os.Stat(filepath.Join(PodinfoDir, "message")); err == nil {
		return p, fmt.Errorf("the host has %s: tests could not tell the pod's file from the host's", PodinfoDir)
	}
	return p, nil
}

// Stderr is what the pod's process wrote to stderr.
func (p *Pod) Stderr() string { return p.stderr.String() }

// Close ends the pod's process (by PID) and removes the namespace, the veth
// and the scratch directory.
func (p *Pod) Close() error {
	p.once.Do(func() {
		if p.cmd != nil && p.cmd.Process != nil {
			if p.stdin != nil {
				p.stdin.Close()
			}
			done := make(chan struct{})
			go func() { p.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				p.cmd.Process.Kill()
				<-done
			}
		}
		for i := len(p.undo) - 1; i >= 0; i-- {
			p.undo[i]()
		}
	})
	return nil
}

// RemoveStale deletes the namespaces and temporary directories of this
// package whose creating process is gone (a test binary killed before its
// cleanup ran: a timeout, a panic).
func RemoveStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], prefix) {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(f[0], prefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*-*"))
	for _, dir := range dirs {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), tempPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(dir)
		}
	}
}

// tempPrefix starts the temporary directories of this package, followed by
// the creator's pid.
const tempPrefix = "doppel-podns-"

// TempDir creates a temporary directory that RemoveStale removes once this
// process is gone, should it die before removing it.
func TempDir() (string, error) {
	return os.MkdirTemp("", fmt.Sprintf("%s%d-", tempPrefix, os.Getpid()))
}

// freeSubnet picks 10.77.X.0/24 that no address or route on the host uses.
func freeSubnet() (int, error) {
	addrs, _ := exec.Command("ip", "-o", "addr").Output()
	routes, _ := exec.Command("ip", "route").Output()
	used := string(addrs) + string(routes)
	for range 50 {
		x := 1 + mrand.IntN(250)
		if !strings.Contains(used, fmt.Sprintf("10.77.%d.", x)) {
			return x, nil
		}
	}
	return 0, errors.New("no free 10.77.X.0/24")
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Agent is a doppel-agent serving a pod.
type Agent struct {
	Addr  string // where helpers connect
	Token string // a session token it accepts

	cmd    *exec.Cmd
	stderr *SyncBuffer
	exited chan struct{}
	once   sync.Once
}

// StartAgent runs the agent binary bin (BuildAgent) against the pod and
// waits for its "listening on" line. extra are more serve flags.
func StartAgent(bin string, p *Pod, extra ...string) (*Agent, error) {
	a := &Agent{Token: protocol.NewToken(), stderr: &SyncBuffer{}, exited: make(chan struct{})}
	args := append([]string{"serve", "--target-pid", strconv.Itoa(p.PID), "--listen", "127.0.0.1:0",
		"--token-sha256", protocol.HashToken(a.Token).String(), "--log-level", "debug"}, extra...)
	a.cmd = exec.Command(bin, args...)
	a.cmd.Stderr = a.stderr
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { a.cmd.Wait(); close(a.exited) }()
	line, err := ReadLine(stdout, 15*time.Second)
	if err != nil || !strings.HasPrefix(line, "listening on ") {
		a.Close()
		return nil, fmt.Errorf("agent's first line %q, %v\n%s", line, err, a.stderr)
	}
	a.Addr = strings.TrimPrefix(line, "listening on ")
	go io.Copy(io.Discard, stdout)
	return a, nil
}

// Stderr is the agent's log.
func (a *Agent) Stderr() string { return a.stderr.String() }

// Exited is closed when the agent process has exited.
func (a *Agent) Exited() <-chan struct{} { return a.exited }

// PID is the agent's process id.
func (a *Agent) PID() int { return a.cmd.Process.Pid }

// Kill ends the agent with SIGKILL, as a crash or an OOM kill would.
func (a *Agent) Kill() error { return a.cmd.Process.Kill() }

// Close ends the agent (SIGTERM, then SIGKILL, by PID).
func (a *Agent) Close() error {
	a.once.Do(func() {
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(3 * time.Second):
			a.cmd.Process.Kill()
			<-a.exited
		}
	})
	return nil
}

// Build builds the main package pkg into out with CGO_ENABLED=1 or 0, from
// the module that contains the current directory.
func Build(pkg, out string, cgo bool) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+map[bool]string{true: "1", false: "0"}[cgo])
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// IsStatic reports whether the ELF binary at path has no interpreter.
func IsStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// BuildAgent builds the static agent binary into dir.
func BuildAgent(dir string) (string, error) {
	bin := filepath.Join(dir, "doppel-agent")
	if err := Build(Module+"/agent", bin, false); err != nil {
		return "", err
	}
	if static, err := IsStatic(bin); err != nil || !static {
		return "", fmt.Errorf("the agent binary is not static (%v)", err)
	}
	return bin, nil
}

// ReadLine reads one line from r within d.
func ReadLine(r io.Reader, d time.Duration) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		ch <- result{strings.TrimSpace(line), err}
	}()
	select {
	case res := <-ch:
		return res.line, res.err
	case <-time.After(d):
		return "", fmt.Errorf("no line within %v", d)
	}
}

// SyncBuffer is a strings.Builder safe for concurrent writers.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Dial connects to the pod's address from the host (through the veth), for
// fixture self-checks.
func (p *Pod) Dial(network string, port int) (net.Conn, error) {
	return net.DialTimeout(network, net.JoinHostPort(p.IP, strconv.Itoa(port)), 5*time.Second)
}
