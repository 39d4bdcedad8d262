//go:build integration && linux

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/test/integration/podns"

	"github.com/doppel-dev/doppel/internal/testnet"
)

// env is what TestMain prepared for every test: built binaries, the pod and
// the agent serving it. setupErr, when set, fails every test (a missing
// prerequisite is a failure, not a skip).
var (
	env      *suite
	setupErr error
)

type suite struct {
	dir    string // binaries and compiled probes
	doppel string
	agent  string
	// probes
	goStatic, goCgo, javaDir string
	pod                      *podns.Pod
	agentProc                *podns.Agent
	repo                     string // the repository root (probe sources)
}

func TestMain(m *testing.M) {
	code := func() int {
		env, setupErr = setup()
		defer env.close()
		return m.Run()
	}()
	os.Exit(code)
}

func (s *suite) close() {
	if s == nil {
		return
	}
	if s.agentProc != nil {
		s.agentProc.Close()
	}
	if s.pod != nil {
		s.pod.Close()
	}
	os.RemoveAll(s.dir)
}

func setup() (*suite, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the integration suite needs root (network namespaces, mounts, seccomp launcher)")
	}
	s := &suite{}
	var err error
	if s.repo, err = repoRoot(); err != nil {
		return s, err
	}
	podns.RemoveStale()
	if s.dir, err = podns.TempDir(); err != nil {
		return s, err
	}
	s.doppel = filepath.Join(s.dir, "doppel")
	s.goStatic = filepath.Join(s.dir, "goprobe-static")
	s.goCgo = filepath.Join(s.dir, "goprobe-cgo")
	fixture := filepath.Join(s.dir, "podfixture")
	builds := []struct {
		pkg, out string
		cgo      bool
	}{
		{podns.Module + "/helper", s.doppel, false},
		{podns.FixturePkg, fixture, false},
		{podns.Module + "/test/apps/probes/goprobe", s.goStatic, false},
		{podns.Module + "/test/apps/probes/goprobe", s.goCgo, true},
	}
	errs := make(chan error, len(builds)+1)
	for _, b := range builds {
		go func() { errs <- podns.Build(b.pkg, b.out, b.cgo) }()
	}
	go func() {
		var err error
		s.agent, err = podns.BuildAgent(s.dir)
		errs <- err
	}()
	for range len(builds) + 1 {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return s, err
	}
	if static, err := podns.IsStatic(s.goStatic); err != nil || !static {
		return s, fmt.Errorf("goprobe-static is not static (%v)", err)
	}
	if static, err := podns.IsStatic(s.goCgo); err != nil || static {
		return s, fmt.Errorf("goprobe-cgo is static: no cgo toolchain? (%v)", err)
	}
	s.javaDir = filepath.Join(s.dir, "java")
	if out, err := exec.Command("javac", "-d", s.javaDir, filepath.Join(s.repo, "test/apps/probes/java/Probe.java")).CombinedOutput(); err != nil {
		return s, fmt.Errorf("javac: %v\n%s", err, out)
	}
	if s.pod, err = podns.Start(podns.Options{Fixture: fixture}); err != nil {
		return s, err
	}
	// One agent for the suite; it must outlive the gaps between sessions.
	if s.agentProc, err = podns.StartAgent(s.agent, s.pod, "--idle-timeout", "10m", "--startup-timeout", "10m"); err != nil {
		return s, err
	}
	return s, nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// need fails the test when the suite could not be set up.
func need(t *testing.T) *suite {
	t.Helper()
	if setupErr != nil {
		t.Fatalf("suite setup: %v", setupErr)
	}
	return env
}

// run is one `doppel exec`.
type run struct {
	// Config is written to WORKDIR/.doppel/config.yaml when not empty.
	Config string
	// Args are doppel's arguments before "--"; the agent flags are added
	// unless NoAgent.
	Args    []string
	NoAgent bool
	Cmd     []string
	Env     []string // added to the local environment
	// Files are written into the working directory (name -> content).
	Files   map[string]string
	Timeout time.Duration
	// Start, if set, is called with the running doppel (to signal it).
	Start func(cmd *exec.Cmd)
	// Dir is the working directory; a fresh temporary one when empty.
	Dir string
}

type result struct {
	Stdout, Stderr string
	Code           int
	Dir            string
	Listens        []listenRecord
	Values         map[string]string // key=value lines of stdout
	Took           time.Duration
}

type listenRecord struct {
	PID       int    `json:"pid"`
	Proto     string `json:"proto"`
	Requested string `json:"requested"`
	Actual    string `json:"actual"`
}

const defaultBaseConfig = `feature:
  fs:
    read_only: ["^/etc/podinfo(/|$)"]
`

// doppel runs `doppel exec` as r says and returns what happened.
func (s *suite) doppelExec(t *testing.T, r run) result {
	t.Helper()
	dir := r.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	if r.Config != "" {
		if err := os.MkdirAll(filepath.Join(dir, ".doppel"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ".doppel", "config.yaml"), []byte(r.Config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range r.Files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	report := filepath.Join(t.TempDir(), "listen.jsonl")
	args := []string{"exec", "--report-listen", report}
	if !r.NoAgent {
		args = append(args, "--agent-address", s.agentProc.Addr, "--agent-token", s.agentProc.Token)
	}
	args = append(args, r.Args...)
	args = append(args, "--")
	args = append(args, r.Cmd...)
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	cmd := exec.Command(s.doppel, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), r.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Its own process group: a signal test's SIGINT must not reach us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A process left behind holding stdout must not hang the test.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if r.Start != nil {
		r.Start(cmd)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		cmd.Process.Signal(syscall.SIGQUIT) // by PID: the doppel this test started
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			err = <-done
		}
		t.Errorf("doppel exec %q did not finish within %v", r.Cmd, timeout)
	}
	res := result{Stdout: stdout.String(), Stderr: stderr.String(), Dir: dir, Took: time.Since(start), Values: map[string]string{}}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Code = 128 + int(ws.Signal())
		}
	case err != nil:
		t.Fatalf("doppel exec: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(res.Stdout))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			if _, dup := res.Values[k]; !dup {
				res.Values[k] = v
			}
		}
	}
	if b, err := os.ReadFile(report); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line == "" {
				continue
			}
			var rec listenRecord
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Errorf("listen report line %q: %v", line, err)
				continue
			}
			res.Listens = append(res.Listens, rec)
		}
	}
	return res
}

// logResult logs a run's output for failed tests.
func logResult(t *testing.T, r result) {
	t.Helper()
	t.Logf("exit %d after %v\n--- stdout\n%s--- stderr\n%s--- listens %+v", r.Code, r.Took.Round(time.Millisecond), r.Stdout, r.Stderr, r.Listens)
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int { return testnet.FreePort(t) }

// holdPort listens on a free port for the rest of the test: the port is
// taken locally.
func holdPort(t *testing.T) int {
	t.Helper()
	return int(netip.MustParseAddrPort(testnet.ServeOn(t, ":0", func(net.Conn) {})).Port())
}

// probeEnv is the probes' configuration (the same for every runtime).
func (s *suite) probeEnv(listenPort, takenPort int) []string {
	p := s.pod
	return []string{
		"PROBE_POD_IP=" + p.IP,
		"PROBE_SHORT_NAME=" + podns.ShortName,
		"PROBE_FQDN=" + podns.FQDN,
		"PROBE_UNKNOWN_NAME=" + podns.UnknownName,
		"PROBE_HOSTS_NAME=" + podns.HostsName,
		"PROBE_TCP_PORT=" + strconv.Itoa(podns.TCPPort),
		"PROBE_UDP_PORT=" + strconv.Itoa(podns.UDPPort),
		"PROBE_HTTP_PORT=" + strconv.Itoa(podns.HTTPPort),
		"PROBE_CLOSED_PORT=" + strconv.Itoa(podns.ClosedPort),
		"PROBE_LISTEN_PORT=" + strconv.Itoa(listenPort),
		"PROBE_TAKEN_PORT=" + strconv.Itoa(takenPort),
	}
}

// pidAlive reports whether pid is a live (not zombie) process.
func pidAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z'
}

// waitGone waits for pid to end.
func waitGone(pid int, within time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for pidAlive(pid) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}
