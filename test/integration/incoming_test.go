//go:build integration

package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/test/integration/podns"
)

// Incoming traffic: the pod's port (the fixture's HTTP server) mirrored,
// stolen, and stolen per request by HTTP filters, for several sessions at
// once, with a Python server as the local process.

// localServer answers "local NAME PATH" and prints each request it gets.
const localServer = `import http.server, sys
name = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        b = ("local %s %s\n" % (name, self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
        print("got %s" % self.path, flush=True)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
`

// session is a running `doppel exec` of the local server.
type session struct {
	cmd            *exec.Cmd
	stdout, stderr *podns.SyncBuffer
	done           chan error
}

func (s *suite) startSession(t *testing.T, name, incoming string) *session {
	t.Helper()
	return s.startSessionOn(t, s.agentProc, name, incoming)
}

// startSessionOn is startSession with another agent than the suite's.
func (s *suite) startSessionOn(t *testing.T, agent *podns.Agent, name, incoming string) *session {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "server.py"), []byte(localServer), 0o644); err != nil {
		t.Fatal(err)
	}
	config := defaultBaseConfig + "  network:\n    incoming: " + incoming + "\n"
	if err := os.MkdirAll(filepath.Join(dir, ".doppel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".doppel", "config.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(s.doppel, "exec", "--agent-address", agent.Addr, "--agent-token", agent.Token, "--",
		"python3", filepath.Join(dir, "server.py"), strconv.Itoa(podns.HTTPPort), name)
	cmd.Dir = dir
	se := &session{cmd: cmd, stdout: &podns.SyncBuffer{}, stderr: &podns.SyncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = se.stdout, se.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { se.done <- cmd.Wait() }()
	t.Cleanup(func() { se.stop(t) })
	return se
}

// waitStderr waits until doppel said s.
func (se *session) waitStderr(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(se.stderr.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("doppel did not say %q:\n%s", s, se.stderr.String())
		}
		select {
		case err := <-se.done:
			se.done <- err
			if strings.Contains(se.stderr.String(), s) {
				return // said it, then exited
			}
			t.Fatalf("doppel exited (%v) before saying %q:\n%s", err, s, se.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends the session with SIGTERM (forwarded to the local server).
func (se *session) stop(t *testing.T) {
	select {
	case err := <-se.done:
		se.done <- err
		return
	default:
	}
	se.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-se.done:
		se.done <- err
	case <-time.After(15 * time.Second):
		se.cmd.Process.Kill()
		t.Errorf("doppel did not end after SIGTERM:\n%s", se.stderr.String())
	}
}

// get sends a request to the pod's HTTP port from the host, as another
// pod would, on a new connection.
func get(t *testing.T, pod *podns.Pod, path string, header ...string) string {
	t.Helper()
	body, err := tryGet(pod, path, header...)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return body
}

func tryGet(pod *podns.Pod, path string, header ...string) (string, error) {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://%s:%d%s", pod.IP, podns.HTTPPort, path), nil)
	if err != nil {
		return "", err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func original(path string) string { return "pod-http host=pod-under-test path=" + path }

func TestIncomingMirror(t *testing.T) {
	s := need(t)
	se := s.startSession(t, "mirror", "mirror")
	se.waitStderr(t, fmt.Sprintf("port %d of the target: mirror", podns.HTTPPort))
	for i := range 3 {
		path := fmt.Sprintf("/mirrored/%d", i)
		if got := get(t, s.pod, path); !strings.HasPrefix(got, original(path)) {
			t.Errorf("GET %s under mirror = %q, want the pod's own answer", path, got)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(se.stdout.String(), "got /mirrored/") < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(se.stdout.String(), "got /mirrored/"); n != 3 {
		t.Errorf("the local server saw %d of 3 mirrored requests:\n%s\nstderr:\n%s", n, se.stdout.String(), se.stderr.String())
	}
	// Mirrored from captured packets: the pod's connections are not
	// redirected through the agent.
	out, _ := exec.Command("ip", "netns", "exec", s.pod.NS, "nft", "list", "ruleset").CombinedOutput()
	if strings.Contains(string(out), fmt.Sprintf("dport %d", podns.HTTPPort)) {
		t.Errorf("port %d is redirected under a mirror:\n%s", podns.HTTPPort, out)
	}
}

func TestIncomingSteal(t *testing.T) {
	s := need(t)
	se := s.startSession(t, "thief", "steal")
	se.waitStderr(t, fmt.Sprintf("port %d of the target: steal", podns.HTTPPort))
	if got := get(t, s.pod, "/stolen"); got != "local thief /stolen\n" {
		t.Errorf("GET under steal = %q, want the local server's answer\nstderr:\n%s", got, se.stderr.String())
	}
	// A second unfiltered steal is refused, naming the first.
	other := s.startSession(t, "second", "steal")
	other.waitStderr(t, "already stolen without a filter by another session")
	other.waitStderr(t, "stopping")
	if got := get(t, s.pod, "/still-stolen"); got != "local thief /still-stolen\n" {
		t.Errorf("after a refused second steal = %q", got)
	}
	se.stop(t)
	// The session is gone: the pod's own server answers again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := get(t, s.pod, "/after")
		if strings.HasPrefix(got, original("/after")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the session ended, GET = %q, want the pod's answer", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestIncomingFilteredSteal(t *testing.T) {
	s := need(t)
	// alice subscribes first: a request both filters match is hers.
	alice := s.startSession(t, "alice", `{mode: steal, http_filter: {header_filter: "^x-user: alice$"}}`)
	alice.waitStderr(t, "steal (filtered)")
	bob := s.startSession(t, "bob", `{mode: steal, http_filter: {path_filter: ".*user=bob.*"}}`)
	bob.waitStderr(t, "steal (filtered)")
	cases := []struct {
		path   string
		header []string
		want   string
	}{
		{"/a", []string{"X-User", "alice"}, "local alice /a\n"},
		{"/b?user=bob", nil, "local bob /b?user=bob\n"},
		{"/c?user=carol", nil, original("/c")},
		{"/d", []string{"X-User", "bob"}, original("/d")},
		{"/e?user=bob", []string{"X-User", "alice"}, "local alice /e?user=bob\n"}, // both match: the earlier subscriber
	}
	for _, c := range cases {
		got := get(t, s.pod, c.path, c.header...)
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("GET %s %v = %q, want %q", c.path, c.header, got, c.want)
		}
	}
	if t.Failed() {
		t.Logf("alice:\n%s\nbob:\n%s", alice.stderr.String(), bob.stderr.String())
	}
}

// TestIncomingRedirectGoesWithTheAgent runs a steal on an agent of its own
// with each redirect backend, reaches the local process from outside the
// pod and from inside it (its own address: the output hook), then kills
// the agent with SIGKILL: the pod's own server must answer the next
// request, with no redirect left behind.
func TestIncomingRedirectGoesWithTheAgent(t *testing.T) {
	s := need(t)
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			agent, err := podns.StartAgent(s.agent, s.pod, "--redirect-backend", backend, "--idle-timeout", "1m")
			if err != nil {
				t.Fatal(err)
			}
			defer agent.Close()
			se := s.startSessionOn(t, agent, "thief-"+backend, "steal")
			se.waitStderr(t, fmt.Sprintf("port %d of the target: steal", podns.HTTPPort))
			want := "local thief-" + backend + " /x\n"
			if got := get(t, s.pod, "/x"); got != want {
				t.Errorf("from outside the pod: %q, want %q", got, want)
			}
			inside, err := exec.Command("ip", "netns", "exec", s.pod.NS, "curl", "-s", "-m", "5",
				fmt.Sprintf("http://%s:%d/x", s.pod.IP, podns.HTTPPort)).Output()
			if string(inside) != want {
				t.Errorf("from inside the pod: %q (%v), want %q", inside, err, want)
			}
			if !strings.Contains(agent.Stderr(), "backend="+backend) {
				t.Errorf("the agent did not use %s:\n%s", backend, agent.Stderr())
			}

			// Its redirect is named after its pid (the suite's own agent
			// has one too).
			name := fmt.Sprintf("doppel-%d", agent.PID())
			agent.Kill()
			<-agent.Exited()
			killed := time.Now()
			for {
				got, err := tryGet(s.pod, "/after")
				if err == nil && strings.HasPrefix(got, original("/after")) {
					break
				}
				if time.Since(killed) > 5*time.Second {
					t.Fatalf("after the agent's SIGKILL: %q, %v (want the pod's own answer)", got, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("the pod's server answered %v after the agent's SIGKILL", time.Since(killed).Round(time.Millisecond))
			// Nothing of doppel is left in the pod's rule sets.
			deadline := time.Now().Add(5 * time.Second)
			for {
				var left []string
				for _, cmd := range [][]string{{"nft", "list", "tables"}, {"iptables-save", "-t", "nat"}, {"ip6tables-save", "-t", "nat"}} {
					out, _ := exec.Command("ip", append([]string{"netns", "exec", s.pod.NS}, cmd...)...).CombinedOutput()
					if strings.Contains(string(out), name) {
						left = append(left, string(out))
					}
				}
				if len(left) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("redirect rules left in the pod after the agent's death:\n%s", strings.Join(left, "\n"))
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// listen_ports: the local server binds 7080 but really listens on the
// port the config names, where it is reachable locally, and still gets
// the pod's port 7080.
func TestIncomingListenPorts(t *testing.T) {
	s := need(t)
	local := freePort(t)
	se := s.startSession(t, "elsewhere", fmt.Sprintf("{mode: steal, listen_ports: [[%d, %d]]}", podns.HTTPPort, local))
	se.waitStderr(t, fmt.Sprintf("port %d of the target: steal", podns.HTTPPort))
	if got := get(t, s.pod, "/remote"); got != "local elsewhere /remote\n" {
		t.Errorf("from the pod's port: %q", got)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/local", local))
	if err != nil {
		t.Fatalf("the local server is not on its listen_ports port %d: %v", local, err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "local elsewhere /local\n" {
		t.Errorf("on port %d locally: %q", local, b)
	}
}
