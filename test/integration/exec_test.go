//go:build integration && linux

package integration

import (
	"net"
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

// A sh -c pipeline: every process of the pipeline is under the layer.
func TestShellPipeline(t *testing.T) {
	s := need(t)
	script := `set -e
cat /etc/podinfo/message | tr a-z A-Z | sed 's/^/upper=/'
printf 'secret_len=%s\n' "$(printf %s "$POD_SECRET" | wc -c)"
getent hosts only-in-pod | awk '{print "resolved=" $1}'
ls /etc/podinfo | wc -l | sed 's/^/entries=/'
printf 'hostname=%s\n' "$(cat /etc/hostname)"
`
	res := s.doppelExec(t, run{Config: defaultBaseConfig, Cmd: []string{"sh", "-c", script}})
	want := map[string]string{
		"upper":      strings.ToUpper(strings.TrimSpace(s.pod.Message)),
		"secret_len": strconv.Itoa(len(s.pod.Secret)),
		"resolved":   s.pod.IP,
		"entries":    strconv.Itoa(len(podns.PodinfoEntries)),
		"hostname":   s.pod.Hostname,
	}
	for k, v := range want {
		if got := res.Values[k]; got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if res.Code != 0 || t.Failed() {
		t.Errorf("exit %d", res.Code)
		logResult(t, res)
	}
}

// The command's exit status is doppel's; a command killed by a signal
// gives 128 + the signal, as a shell reports it.
func TestExitStatus(t *testing.T) {
	s := need(t)
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 7", 7},
		{"exit 255", 255},
		{"kill -TERM $$", 128 + int(syscall.SIGTERM)},
		{"kill -KILL $$", 128 + int(syscall.SIGKILL)},
	} {
		t.Run(tc.script, func(t *testing.T) {
			res := s.doppelExec(t, run{Cmd: []string{"sh", "-c", tc.script}})
			if res.Code != tc.want {
				t.Errorf("doppel exited %d, want %d", res.Code, tc.want)
				logResult(t, res)
			}
		})
	}
	t.Run("command not found", func(t *testing.T) {
		res := s.doppelExec(t, run{Cmd: []string{"doppel-no-such-command"}})
		if res.Code != 127 {
			t.Errorf("doppel exited %d, want 127", res.Code)
			logResult(t, res)
		}
		if !strings.Contains(res.Stderr, "doppel-no-such-command") {
			t.Errorf("stderr does not name the command:\n%s", res.Stderr)
		}
	})
}

// waitFile waits for a file holding a pid.
func waitPidFile(t *testing.T, path string, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err == nil {
				return pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not appear within %v", path, within)
	return 0
}

// SIGINT and SIGTERM sent to doppel reach the command, and when it is gone
// nothing it started is left: a background child, and a daemonized
// grandchild (double fork, new session) that the subreaper inherited.
func TestSignalEndsTheTree(t *testing.T) {
	s := need(t)
	for sig, sigName := range map[syscall.Signal]string{syscall.SIGINT: "INT", syscall.SIGTERM: "TERM"} {
		for _, trapped := range []bool{false, true} {
			name := "SIG" + sigName
			script := `sleep 300 & echo $! > child.pid
( setsid sleep 301 & echo $! > grandchild.pid )
`
			want := 128 + int(sig)
			if trapped {
				// The command's handler runs (and decides the exit status):
				// the signal was forwarded, not just fatal to doppel.
				name += " trapped"
				script += `trap 'echo got > signal; exit 42' ` + sigName + "\n"
				want = 42
			}
			script += "echo $$ > cmd.pid\nwait\n"
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				var pids []int
				res := s.doppelExec(t, run{
					Dir:     dir,
					Cmd:     []string{"sh", "-c", script},
					Timeout: 30 * time.Second,
					Start: func(cmd *exec.Cmd) {
						for _, f := range []string{"cmd.pid", "child.pid", "grandchild.pid"} {
							pids = append(pids, waitPidFile(t, filepath.Join(dir, f), 10*time.Second))
						}
						for _, pid := range pids {
							if !pidAlive(pid) {
								t.Errorf("pid %d is not running before the signal", pid)
							}
						}
						cmd.Process.Signal(sig) // by PID: the doppel this test started
					},
				})
				if res.Code != want {
					t.Errorf("doppel exited %d, want %d", res.Code, want)
					logResult(t, res)
				}
				if _, err := os.Stat(filepath.Join(dir, "signal")); trapped && err != nil {
					t.Errorf("the command's handler did not run: %v", err)
				}
				for i, pid := range pids {
					if !waitGone(pid, 5*time.Second) {
						t.Errorf("%s %d still runs after doppel exited", []string{"command", "child", "grandchild"}[i], pid)
						syscall.Kill(pid, syscall.SIGKILL) // by PID: started by this test's command
					}
				}
			})
		}
	}
}

// When the command exits by itself, what it left running is ended too.
func TestExitEndsTheTree(t *testing.T) {
	s := need(t)
	dir := t.TempDir()
	res := s.doppelExec(t, run{Dir: dir, Cmd: []string{"sh", "-c",
		`( setsid sleep 302 & echo $! > grandchild.pid ); trap '' TERM; sleep 303 & echo $! > child.pid; exit 3`}})
	if res.Code != 3 {
		t.Errorf("exit %d, want 3", res.Code)
		logResult(t, res)
	}
	for _, f := range []string{"child.pid", "grandchild.pid"} {
		pid := waitPidFile(t, filepath.Join(dir, f), time.Second)
		if !waitGone(pid, 5*time.Second) {
			t.Errorf("%s %d still runs after doppel exited", f, pid)
			syscall.Kill(pid, syscall.SIGKILL) // by PID: started by this test's command
		}
	}
}

// An agent that cannot be reached, or that refuses the token, fails doppel
// with a clear error before the command runs.
func TestAgentUnreachable(t *testing.T) {
	s := need(t)
	// A port nobody listens on: taken and released.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	for _, tc := range []struct {
		name   string
		args   []string
		errors []string
	}{
		{"nobody listens", []string{"--agent-address", dead, "--agent-token", s.agentProc.Token},
			[]string{"cannot reach the agent at " + dead, "connection refused"}},
		{"wrong token", []string{"--agent-address", s.agentProc.Addr, "--agent-token", "not-the-token"},
			[]string{"agent at " + s.agentProc.Addr}},
		{"no target", nil, []string{"no target", "--target"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := s.doppelExec(t, run{NoAgent: true, Args: tc.args, Cmd: []string{"sh", "-c", "touch ran"}, Timeout: 30 * time.Second})
			if res.Code == 0 {
				t.Errorf("doppel exited 0")
			}
			for _, e := range tc.errors {
				if !strings.Contains(res.Stderr, e) {
					t.Errorf("stderr does not say %q:\n%s", e, res.Stderr)
				}
			}
			if _, err := os.Stat(filepath.Join(res.Dir, "ran")); err == nil {
				t.Error("the command ran")
			}
			if res.Took > 20*time.Second {
				t.Errorf("failing took %v", res.Took)
			}
		})
	}
}

// An unknown configuration key is an error naming the key path and the
// line, before anything runs.
func TestUnknownConfigKey(t *testing.T) {
	s := need(t)
	config := `feature:
  fs:
    mode: read
  network:
    outgoing:
      tcp: true
      udpp: false
`
	res := s.doppelExec(t, run{Config: config, Cmd: []string{"sh", "-c", "touch ran"}})
	if res.Code == 0 {
		t.Error("doppel exited 0")
	}
	for _, want := range []string{filepath.Join(".doppel", "config.yaml") + ":7", "feature.network.outgoing.udpp"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, res.Stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(res.Dir, "ran")); err == nil {
		t.Error("the command ran")
	}
	// The same file given with -f.
	other := t.TempDir()
	path := filepath.Join(other, "bad.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	res = s.doppelExec(t, run{Args: []string{"-f", path}, Cmd: []string{"sh", "-c", "touch ran"}})
	if res.Code == 0 || !strings.Contains(res.Stderr, path+":7") || !strings.Contains(res.Stderr, "feature.network.outgoing.udpp") {
		t.Errorf("-f: exit %d, stderr:\n%s", res.Code, res.Stderr)
	}
}

// The suite proves something only if the probes fail without doppel: the
// static Go probe run directly sees the host, not the pod.
func TestProbeWithoutDoppelSeesTheHost(t *testing.T) {
	s := need(t)
	cmd := exec.Command(s.goStatic)
	taken := holdPort(t)
	cmd.Env = append(os.Environ(), s.probeEnv(freePort(t), taken)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	values := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			values[k] = v
		}
	}
	if values["env.POD_SECRET"] == s.pod.Secret {
		t.Error("the host has the pod's secret")
	}
	if _, ok := values["dns.guard"]; !ok {
		t.Errorf("the probe's DNS guard did not see the host's resolv.conf: %q", values)
	}
	if want := "hello from " + s.pod.Hostname + " to " + s.pod.HostIP + ":"; !strings.HasPrefix(values["tcp.greeting"], want) {
		t.Errorf("from the host, the greeting is %q, want %q...", values["tcp.greeting"], want)
	}
	if values["file.message"] != "ENOENT" {
		t.Errorf("the host reads the pod's file: %q", values["file.message"])
	}
	if got := values["listen.taken_port"]; !strings.Contains(got, "address already in use") {
		t.Errorf("without doppel, listening on the taken port %d gave %q", taken, got)
	}
}

// Many connections at once: every one is dialled in the pod and matched to
// its own tunnel connection (the tunnel pairs them by source address), and
// every program-side peer is the pod's.
func TestConcurrentConnections(t *testing.T) {
	s := need(t)
	const n = 200
	res := s.doppelExec(t, run{Config: defaultBaseConfig, Cmd: []string{s.goStatic, "-stress", strconv.Itoa(n)},
		Env: s.probeEnv(0, 0), Timeout: 90 * time.Second})
	if got := res.Values["stress.ok"]; got != strconv.Itoa(n) || res.Code != 0 {
		t.Errorf("%s of %d rounds succeeded, exit %d", got, n, res.Code)
		logResult(t, res)
	}
}

// A program that opens and closes UDP sockets in a loop: each socket gets a
// relay holding one of the session's agent streams, of which the agent
// grants 256; the relays of closed sockets must give them back, or every
// later socket and connect fails with EMFILE.
func TestManyShortLivedUDPSockets(t *testing.T) {
	s := need(t)
	script := `
import os, socket
ip, port = os.environ["PROBE_POD_IP"], int(os.environ["PROBE_UDP_PORT"])
ok, err = 0, None
for i in range(400):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(5)
            u.connect((ip, port))
            u.send(b"x%d" % i)
            if u.recv(100) != b"echo:x%d" % i:
                raise Exception("wrong answer")
            ok += 1
    except Exception as e:
        err = "socket %d: %s" % (i, e)
        break
print("udp_ok=%d" % ok)
print("udp_err=%s" % err)
try:
    socket.create_connection((ip, int(os.environ["PROBE_TCP_PORT"])), timeout=5).close()
    print("tcp_after=ok")
except Exception as e:
    print("tcp_after=%s" % e)
`
	res := s.doppelExec(t, run{Cmd: []string{"python3", "-c", script}, Env: s.probeEnv(0, 0), Timeout: 120 * time.Second})
	if res.Values["udp_ok"] != "400" || res.Values["tcp_after"] != "ok" {
		t.Errorf("udp_ok=%s (%s), tcp_after=%s", res.Values["udp_ok"], res.Values["udp_err"], res.Values["tcp_after"])
		logResult(t, res)
	}
}

// A helper killed with SIGKILL takes its command with it, and the tree
// guard the rest of the tree (here a grandchild in a subshell): nothing is
// left running with a dead supervisor (every trapped call would fail).
func TestHelperKilledEndsTheCommand(t *testing.T) {
	s := need(t)
	dir := t.TempDir()
	var pid, grandchild int
	res := s.doppelExec(t, run{
		Dir:     dir,
		Cmd:     []string{"sh", "-c", "(sleep 300 & echo $! > gc.pid; wait) & echo $$ > cmd.pid; wait"},
		Timeout: 30 * time.Second,
		Start: func(cmd *exec.Cmd) {
			pid = waitPidFile(t, filepath.Join(dir, "cmd.pid"), 10*time.Second)
			grandchild = waitPidFile(t, filepath.Join(dir, "gc.pid"), 10*time.Second)
			// The helper tells its guard the tree's members after each
			// scan of /proc, at least every second (docs/troubleshooting.md).
			time.Sleep(1500 * time.Millisecond)
			cmd.Process.Kill() // by PID: the doppel this test started
		},
	})
	if res.Code != 128+int(syscall.SIGKILL) {
		t.Errorf("doppel exited %d, want %d (SIGKILL)", res.Code, 128+int(syscall.SIGKILL))
	}
	for _, p := range []int{pid, grandchild} {
		if !waitGone(p, 5*time.Second) {
			t.Errorf("%d (%s) still runs after its helper was killed", p, procComm(p))
			syscall.Kill(p, syscall.SIGKILL) // by PID: started by this test
		}
	}
}

// `doppel wrap` stands for its command: a signal sent to the wrapper
// reaches the command, whose exit code is the wrapper's; a wrapper killed
// with SIGKILL takes the command with it.
func TestWrapStandsForItsCommand(t *testing.T) {
	s := need(t)
	buildShim(t, s)
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		want int // doppel exec's exit code: the wrapper's
	}{
		{"SIGTERM", syscall.SIGTERM, 128 + int(syscall.SIGTERM)},
		{"SIGKILL", syscall.SIGKILL, 128 + int(syscall.SIGKILL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var wrapper, command int
			res := s.doppelExec(t, run{
				Dir:  dir,
				Args: []string{"--preload"},
				// The shell execs into the wrapper, whose pid it wrote.
				Cmd:     []string{"sh", "-c", `echo $$ > wrapper.pid; exec "$0" wrap -- sh -c 'echo $$ > command.pid; exec sleep 300'`, s.doppel},
				Timeout: 30 * time.Second,
				Start: func(*exec.Cmd) {
					wrapper = waitPidFile(t, filepath.Join(dir, "wrapper.pid"), 10*time.Second)
					command = waitPidFile(t, filepath.Join(dir, "command.pid"), 10*time.Second)
					syscall.Kill(wrapper, tc.sig) // by PID: the wrapper this test started
				},
			})
			if res.Code != tc.want {
				t.Errorf("doppel exited %d, want %d", res.Code, tc.want)
				logResult(t, res)
			}
			if !waitGone(command, 5*time.Second) {
				t.Errorf("the wrapped command %d still runs after its wrapper got %s", command, tc.name)
				syscall.Kill(command, syscall.SIGKILL) // by PID: started by this test
			}
		})
	}
}
