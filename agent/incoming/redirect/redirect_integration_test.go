//go:build integration && linux

package redirect

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// ownerEnv makes the test binary an owner process (runOwner) instead of
// running tests.
const ownerEnv = "DOPPEL_REDIRECT_TEST_OWNER"

func TestMain(m *testing.M) {
	MaybeRunGuardian()
	if job := os.Getenv(ownerEnv); job != "" {
		os.Exit(runOwner(job))
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "the redirect integration tests need root")
		os.Exit(1)
	}
	// Guardians whose owner a test killed become this process's children,
	// so the test can wait for them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// nftState lists the inet tables in the pod with nft.
func nftState(t *testing.T, p *testPod) string {
	return p.nsExec(t, "nft", "list", "tables", "inet")
}

// iptState lists the nat chains of both families in the pod.
func iptState(t *testing.T, p *testPod) string {
	return p.nsExec(t, "iptables", "-w", "5", "-t", "nat", "-S") +
		p.nsExec(t, "ip6tables", "-w", "5", "-t", "nat", "-S")
}

func TestNftables(t *testing.T) {
	p := newPod(t)
	r, err := NewNftables(p.ns, listenPort, testMark, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Backend() != BackendNftables {
		t.Errorf("Backend() = %q", r.Backend())
	}
	table := p.nsExec(t, "nft", "list", "table", "inet", r.Name())
	t.Logf("nft list table inet %s:\n%s", r.Name(), table)
	if !strings.Contains(table, "flags owner") {
		t.Errorf("the table is not owned:\n%s", table)
	}
	// Others can't touch it.
	if out, err := exec.Command("ip", "netns", "exec", p.name, "nft", "delete", "table", "inet", r.Name()).CombinedOutput(); err == nil {
		t.Errorf("nft could delete the owned table: %s", out)
	}
	scenario(t, p, r, func() string { return nftState(t, p) }, "inet "+r.Name())
}

func TestIptables(t *testing.T) {
	p := newPod(t)
	r, err := NewIptables(p.ns, listenPort, testMark, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Backend() != BackendIptables {
		t.Errorf("Backend() = %q", r.Backend())
	}
	t.Logf("binaries %v, guardian %d", r.(*iptRedirector).bins, r.(*iptRedirector).guardianPID())
	scenario(t, p, r, func() string { return iptState(t, p) }, "-N "+r.Name()+"-pre")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.(*iptRedirector).guardian.Exited():
	default:
		t.Error("the guardian still runs after Close")
	}
}

func TestIptablesLegacy(t *testing.T) {
	defer func(v [][2]string) { iptablesVariants = v }(iptablesVariants)
	iptablesVariants = [][2]string{{"iptables-legacy", "ip6tables-legacy"}}
	p := newPod(t)
	r, err := NewIptables(p.ns, listenPort, testMark, "t")
	if err != nil {
		t.Skipf("iptables-legacy unusable here: %v", err)
	}
	defer r.Close()
	state := func() string {
		return p.nsExec(t, "iptables-legacy", "-w", "5", "-t", "nat", "-S") +
			p.nsExec(t, "ip6tables-legacy", "-w", "5", "-t", "nat", "-S")
	}
	scenario(t, p, r, state, "-N "+r.Name()+"-pre")
}

// scenario runs the behaviour every backend must have; r redirects
// nothing yet, state lists the backend's state in the pod, and present is
// in it while r is open.
func scenario(t *testing.T, p *testPod, r Redirector, state func() string, present string) {
	if s := state(); !strings.Contains(s, present) {
		t.Fatalf("%q missing from the pod's state:\n%s", present, s)
	}
	if err := r.Add(listenPort); err == nil {
		t.Error("Add(listen port) succeeded")
	}

	// Connections that exist before Add.
	preOut4 := p.dialOut(t, ap(p.ip4, podPort))
	expectOriginal(t, preOut4)
	preOut6 := p.dialOut(t, ap(p.ip6, podPort))
	expectOriginal(t, preOut6)
	preIn := p.dialIn(t, ap(lo4, podPort), 0)
	expectOriginal(t, preIn)

	start := time.Now()
	if err := r.Add(podPort); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: Add took %v", r.Backend(), time.Since(start))
	if err := r.Add(podPort); err != nil {
		t.Errorf("adding again: %v", err)
	}
	if got := r.Ports(); !slices.Equal(got, []uint16{podPort}) {
		t.Errorf("Ports() = %v", got)
	}

	t.Run("existing connections stay", func(t *testing.T) {
		echo(t, preOut4, "outside IPv4")
		echo(t, preOut6, "outside IPv6")
		echo(t, preIn, "inside 127.0.0.1")
	})
	t.Run("new connections are redirected", func(t *testing.T) {
		c := p.dialOut(t, ap(p.ip4, podPort))
		expectRedirect(t, c, ap(p.ip4, podPort))
		echo(t, c, "redirected outside IPv4")
		expectRedirect(t, p.dialOut(t, ap(p.ip6, podPort)), ap(p.ip6, podPort))
		expectRedirect(t, p.dialIn(t, ap(lo4, podPort), 0), ap(lo4, podPort))
		expectRedirect(t, p.dialIn(t, ap(lo6, podPort), 0), ap(lo6, podPort))
		expectRedirect(t, p.dialIn(t, ap(p.ip4, podPort), 0), ap(p.ip4, podPort))
		expectRedirect(t, p.dialIn(t, ap(p.ip6, podPort), 0), ap(p.ip6, podPort))
		// Straight to the listener: the original destination is the
		// listener itself, which the agent must refuse.
		expectRedirect(t, p.dialOut(t, ap(p.ip4, listenPort)), ap(p.ip4, listenPort))
		// A mark that is not the agent's changes nothing.
		expectRedirect(t, p.dialIn(t, ap(lo4, podPort), testMark+1), ap(lo4, podPort))
	})
	var marked []net.Conn
	t.Run("marked connections reach the original server", func(t *testing.T) {
		for _, a := range []netip.Addr{lo4, lo6, p.ip4, p.ip6} {
			c := p.dialIn(t, ap(a, podPort), testMark)
			expectOriginal(t, c)
			marked = append(marked, c)
		}
	})
	t.Run("Flush resets the connections of before", func(t *testing.T) {
		start := time.Now()
		n, err := Flush(p.ns, podPort, testMark)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("Flush destroyed %d sockets in %v", n, time.Since(start))
		if n < 3 {
			t.Errorf("Flush destroyed %d sockets, want at least the 3 of before", n)
		}
		expectReset(t, preOut4, "outside IPv4")
		expectReset(t, preOut6, "outside IPv6")
		expectReset(t, preIn, "inside 127.0.0.1")
		for _, c := range marked {
			echo(t, c, "marked "+c.RemoteAddr().String())
		}
		// The agent's redirected connections are untouched too.
		c := p.dialOut(t, ap(p.ip4, podPort))
		expectRedirect(t, c, ap(p.ip4, podPort))
		if _, err := Flush(p.ns, podPort, testMark); err != nil {
			t.Fatal(err)
		}
		echo(t, c, "redirected after Flush")
	})
	t.Run("Remove restores direct traffic", func(t *testing.T) {
		if err := r.Remove(podPort); err != nil {
			t.Fatal(err)
		}
		if err := r.Remove(podPort); err != nil {
			t.Errorf("removing again: %v", err)
		}
		if got := r.Ports(); len(got) != 0 {
			t.Errorf("Ports() = %v", got)
		}
		expectOriginal(t, p.dialOut(t, ap(p.ip4, podPort)))
		expectOriginal(t, p.dialOut(t, ap(p.ip6, podPort)))
		expectOriginal(t, p.dialIn(t, ap(lo4, podPort), 0))
		expectOriginal(t, p.dialIn(t, ap(lo6, podPort), 0))
	})
	t.Run("Close removes everything", func(t *testing.T) {
		if err := r.Add(podPort); err != nil {
			t.Fatal(err)
		}
		if err := r.Add(podPort + 1); err != nil {
			t.Fatal(err)
		}
		expectRedirect(t, p.dialOut(t, ap(p.ip4, podPort)), ap(p.ip4, podPort))
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Add(podPort); !errors.Is(err, ErrClosed) {
			t.Errorf("Add after Close: %v", err)
		}
		if s := state(); strings.Contains(s, present) {
			t.Errorf("%q still in the pod's state after Close:\n%s", present, s)
		}
		expectOriginal(t, p.dialOut(t, ap(p.ip4, podPort)))
		expectOriginal(t, p.dialIn(t, ap(lo6, podPort), 0))
	})
}

func TestNewFallsBackToIptables(t *testing.T) {
	defer func() { nftablesHook = nil }()
	nftablesHook = func() error { return errors.New("forced nftables failure") }
	p := newPod(t)
	var log strings.Builder
	r, err := New(p.ns, Options{ListenPort: listenPort, Mark: testMark, Name: "fb",
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Backend() != BackendIptables {
		t.Fatalf("Backend() = %q", r.Backend())
	}
	if !strings.Contains(log.String(), "forced nftables failure") {
		t.Errorf("the reason was not logged: %q", log.String())
	}
	if err := r.Add(podPort); err != nil {
		t.Fatal(err)
	}
	expectRedirect(t, p.dialOut(t, ap(p.ip4, podPort)), ap(p.ip4, podPort))

	nftablesHook = nil
	r2, err := New(p.ns, Options{ListenPort: listenPort, Mark: testMark, Name: "nofb"})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.Backend() != BackendNftables {
		t.Errorf("without a failure New chose %q", r2.Backend())
	}
}

// TestTwoOwners: two agents' tables coexist; closing one leaves the other.
func TestTwoOwners(t *testing.T) {
	p := newPod(t)
	a, err := NewNftables(p.ns, listenPort, testMark, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewNftables(p.ns, listenPort, testMark, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := NewNftables(p.ns, listenPort, testMark, "a"); err == nil {
		t.Error("a second table by the same name was created")
	}
	if err := b.Add(podPort); err != nil {
		t.Fatal(err)
	}
	a.Close()
	s := nftState(t, p)
	if strings.Contains(s, a.Name()) || !strings.Contains(s, b.Name()) {
		t.Errorf("after closing %s:\n%s", a.Name(), s)
	}
	expectRedirect(t, p.dialOut(t, ap(p.ip4, podPort)), ap(p.ip4, podPort))
}

// ownerJob is what an owner process does.
type ownerJob struct {
	Backend string `json:"backend"`
	Netns   string `json:"netns"`
	Name    string `json:"name"`
}

// runOwner runs in a re-executed test binary: it redirects podPort in the
// namespace, says "ready NAME GUARDIANPID" and waits to be killed.
func runOwner(jobJSON string) int {
	var job ownerJob
	if err := json.Unmarshal([]byte(jobJSON), &job); err != nil {
		fmt.Fprintln(os.Stderr, "owner:", err)
		return 2
	}
	ns, err := enterNetns(job.Netns)
	if err != nil {
		fmt.Fprintln(os.Stderr, "owner:", err)
		return 2
	}
	r, err := New(ns, Options{ListenPort: listenPort, Mark: testMark, Name: job.Name, Backend: job.Backend})
	if err == nil {
		err = r.Add(podPort)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "owner:", err)
		return 2
	}
	gpid := 0
	if ir, ok := r.(*iptRedirector); ok {
		gpid = ir.guardianPID()
	}
	fmt.Printf("ready %s %d\n", r.Name(), gpid)
	io.Copy(io.Discard, os.Stdin)
	r.Close()
	return 0
}

// startOwner starts an owner process for backend in p and returns it with
// its table's (chains') name and its guardian's pid.
func startOwner(t *testing.T, p *testPod, backend string) (*exec.Cmd, string, int) {
	t.Helper()
	job, _ := json.Marshal(ownerJob{Backend: backend, Netns: p.path, Name: "owner"})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), ownerEnv+"="+string(job))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		io.Copy(io.Discard, stdout)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(15 * time.Second):
		t.Fatal("the owner did not get ready")
	}
	var name string
	var gpid int
	if _, err := fmt.Sscanf(line, "ready %s %d", &name, &gpid); err != nil {
		t.Fatalf("the owner said %q", line)
	}
	return cmd, name, gpid
}

func TestSIGKILLNftables(t *testing.T) {
	p := newPod(t)
	owner, name, _ := startOwner(t, p, BackendNftables)
	expectRedirect(t, p.dialOut(t, ap(p.ip4, podPort)), ap(p.ip4, podPort))
	if s := nftState(t, p); !strings.Contains(s, name) {
		t.Fatalf("no table %s:\n%s", name, s)
	}
	// A netlink socket of our own in the pod, to watch the tables.
	var cc *nftables.Conn
	if err := p.ns.InNetns(func() (err error) { cc, err = nftables.New(nftables.AsLasting()); return }); err != nil {
		t.Fatal(err)
	}
	defer cc.CloseLasting()
	hasTable := func() bool {
		tables, err := cc.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(tables, func(tb *nftables.Table) bool { return tb.Name == name })
	}
	if !hasTable() {
		t.Fatal("the watcher does not see the table")
	}

	start := time.Now()
	if err := owner.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	polls := 0
	for hasTable() {
		polls++
		if time.Since(start) > 2*time.Second {
			t.Fatal("the table is still there 2 s after SIGKILL")
		}
	}
	gone := time.Since(start)
	owner.Wait()
	t.Logf("table %s gone %v after SIGKILL (%d polls of the table list over netlink)", name, gone, polls)
	if s := nftState(t, p); strings.Contains(s, name) {
		t.Errorf("nft list tables still shows %s:\n%s", name, s)
	}
	expectOriginal(t, p.dialOut(t, ap(p.ip4, podPort)))
	expectOriginal(t, p.dialIn(t, ap(lo6, podPort), 0))
}

func TestSIGKILLIptables(t *testing.T) {
	p := newPod(t)
	owner, name, gpid := startOwner(t, p, BackendIptables)
	if gpid == 0 {
		t.Fatal("no guardian")
	}
	expectRedirect(t, p.dialOut(t, ap(p.ip4, podPort)), ap(p.ip4, podPort))
	if s := iptState(t, p); !strings.Contains(s, "-N "+name+"-pre") {
		t.Fatalf("no chain %s-pre:\n%s", name, s)
	}

	start := time.Now()
	if err := owner.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// New connections reach the original server again once the jumps are
	// gone; dial until one does.
	for {
		c := p.dialOut(t, ap(p.ip4, podPort))
		g := greeting(t, c)
		c.Close()
		if g == "original" {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("still redirected 5 s after SIGKILL")
		}
	}
	restored := time.Since(start)
	owner.Wait() // the guardian is this process's child from now on
	var ws unix.WaitStatus
	if _, err := unix.Wait4(gpid, &ws, 0, nil); err != nil {
		t.Fatalf("waiting for the guardian %d: %v", gpid, err)
	}
	done := time.Since(start)
	t.Logf("after SIGKILL of the owner: IPv4 traffic reached the original server after %v, guardian %d done cleaning up after %v (exit status %d)",
		restored, gpid, done, ws.ExitStatus())
	if ws.ExitStatus() != 0 {
		t.Errorf("the guardian exited with %d", ws.ExitStatus())
	}
	if s := iptState(t, p); strings.Contains(s, name) {
		t.Errorf("the chains are still there:\n%s", s)
	}
	expectOriginal(t, p.dialOut(t, ap(p.ip4, podPort)))
	expectOriginal(t, p.dialOut(t, ap(p.ip6, podPort)))
	expectOriginal(t, p.dialIn(t, ap(lo4, podPort), 0))
}

// guardianPID is the guardian's process id, 0 without one.
func (r *iptRedirector) guardianPID() int {
	if r.guardian == nil {
		return 0
	}
	return r.guardian.PID()
}
