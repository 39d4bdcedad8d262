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
	cmd := exec.Command(s.doppel, "exec", "--agent-address", s.agentProc.Addr, "--agent-token", s.agentProc.Token, "--",
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
	req, err := http.NewRequest("GET", fmt.Sprintf("http://%s:%d%s", pod.IP, podns.HTTPPort, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
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
	alice := s.startSession(t, "alice", `{mode: steal, http_filter: {header_filter: "^x-user: alice$"}}`)
	bob := s.startSession(t, "bob", `{mode: steal, http_filter: {path_filter: ".*user=bob.*"}}`)
	alice.waitStderr(t, "steal (filtered)")
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
