//go:build integration && linux

package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/rpc"
	"net/rpc/jsonrpc"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/test/integration/podns"
	"github.com/doppel-dev/doppel/test/tools"
)

const dlvServerPkg = podns.Module + "/test/apps/dlvserver"

// The handler the breakpoint is set in.
const dlvHandler = "main.callHandler"

// A static Go server debugged with Delve under doppel: dlv itself is a
// build tool (skipped, not intercepted), its debuggee is intercepted. A
// breakpoint in the handler is hit, the debuggee stays paused a while,
// continues, and its connection to the pod-only server is still redirected
// to the pod. dlv's own API port is not the command's listening port.
func TestDelve(t *testing.T) {
	s := need(t)
	dlv := installDelve(t)
	t.Run("exec", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "dlvserver")
		cmd := exec.Command("go", "build", "-gcflags=all=-N -l", "-o", bin, dlvServerPkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", dlvServerPkg, err, out)
		}
		if static, err := podns.IsStatic(bin); err != nil || !static {
			t.Fatalf("%s is not static (%v)", bin, err)
		}
		port := freePort(t)
		s.debugSession(t, filepath.Dir(bin), port, dlv, "exec", "./dlvserver")
	})
	t.Run("debug", func(t *testing.T) {
		// dlv runs `go build` itself (go, compile and link are skipped by
		// name too), in the package's directory: the module's.
		out := filepath.Join(t.TempDir(), "dlvserver-debug")
		port := freePort(t)
		s.debugSession(t, filepath.Join(s.repo, "test/apps/dlvserver"), port, dlv, "debug", "--output", out)
	})
}

// installDelve returns the dlv binary, installing it with `go install` when
// it is missing. Not being able to install it fails the test.
func installDelve(t *testing.T) string {
	t.Helper()
	bin, err := tools.Delve()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Delve's JSON-RPC API (service/rpc2, service/api), only what the test uses.
type (
	dlvBreakpoint struct {
		ID           int    `json:"id,omitempty"`
		FunctionName string `json:"functionName,omitempty"`
		File         string `json:"file,omitempty"`
		Line         int    `json:"line,omitempty"`
	}
	dlvThread struct {
		ID         int                    `json:"id"`
		Function   *struct{ Name string } `json:"function,omitempty"`
		Breakpoint *dlvBreakpoint         `json:"breakPoint,omitempty"`
	}
	dlvState struct {
		Pid           int        `json:"Pid"`
		Running       bool       `json:"Running"`
		CurrentThread *dlvThread `json:"currentThread,omitempty"`
		Exited        bool       `json:"exited"`
		ExitStatus    int        `json:"exitStatus"`
	}
	dlvCreateBreakpointIn struct {
		Breakpoint dlvBreakpoint
	}
	dlvCreateBreakpointOut struct {
		Breakpoint dlvBreakpoint
	}
	dlvCommand struct {
		Name string `json:"name"`
	}
	dlvCommandOut struct {
		State dlvState
	}
	dlvDetachIn struct {
		Kill bool
	}
	dlvProcessPidOut struct {
		Pid int
	}
)

var dlvListening = regexp.MustCompile(`API server listening at: (127\.0\.0\.1:\d+)`)

// debugSession runs `doppel exec -- dlv MODE ARGS... --headless ... --
// -port PORT -target POD:TCP` in dir and drives it through a breakpoint.
func (s *suite) debugSession(t *testing.T, dir string, port int, dlv, mode string, args ...string) {
	// Every process of the session carries this in its environment: what
	// is left after doppel exits can be found (and ended) by it.
	marker := "DOPPEL_IT_DELVE=" + strconv.FormatInt(time.Now().UnixNano(), 36)
	report := filepath.Join(t.TempDir(), "listen.jsonl")
	target := net.JoinHostPort(s.pod.IP, strconv.Itoa(podns.TCPPort))
	dargs := []string{"exec", "--report-listen", report,
		"--agent-address", s.agentProc.Addr, "--agent-token", s.agentProc.Token, "--",
		dlv, mode}
	dargs = append(dargs, args...)
	// dlv's API port is chosen here too: with --listen=127.0.0.1:0 the
	// kernel once gave dlv the port just freed for the debuggee, and the
	// test then talked HTTP to dlv.
	dlvPort := freePort(t)
	for dlvPort == port {
		dlvPort = freePort(t)
	}
	dargs = append(dargs, "--headless", "--api-version=2", "--accept-multiclient", "--listen=127.0.0.1:"+strconv.Itoa(dlvPort),
		"--", "-port", strconv.Itoa(port), "-target", target)
	cmd := exec.Command(s.doppel, dargs...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", marker)
	var stdout, stderr podns.SyncBuffer
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.Close()
		done <- err
	}()
	apiAddr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			stdout.Write([]byte(sc.Text() + "\n"))
			if m := dlvListening.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case apiAddr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	exited := false
	var exitErr error
	defer func() {
		if !exited {
			cmd.Process.Kill() // by PID: the doppel this test started
			<-done
		}
		for _, pid := range pidsWithEnv(marker) {
			t.Errorf("pid %d (%s) still runs after doppel exited", pid, procComm(pid))
			syscall.Kill(pid, syscall.SIGKILL) // by PID: marked as started by this test
		}
		if t.Failed() {
			t.Logf("doppel exit: %v\n--- stdout\n%s--- stderr\n%s", exitErr, stdout.String(), stderr.String())
		}
	}()

	// dlv debug compiles the whole program without optimizations first.
	var addr string
	select {
	case addr = <-apiAddr:
	case exitErr = <-done:
		exited = true
		t.Fatalf("doppel exited before dlv listened: %v", exitErr)
	case <-time.After(3 * time.Minute):
		t.Fatal("dlv did not listen within 3m")
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing dlv at %s: %v", addr, err)
	}
	client := jsonrpc.NewClient(conn)
	defer client.Close()
	call := func(method string, in, out any) {
		t.Helper()
		if err := callTimeout(client, method, in, out, 30*time.Second); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
	}

	var pidOut dlvProcessPidOut
	call("RPCServer.ProcessPid", struct{}{}, &pidOut)
	debuggee := pidOut.Pid
	if debuggee <= 0 {
		t.Fatalf("dlv gave no debuggee pid: %+v", pidOut)
	}
	var bp dlvCreateBreakpointOut
	call("RPCServer.CreateBreakpoint", dlvCreateBreakpointIn{Breakpoint: dlvBreakpoint{FunctionName: dlvHandler}}, &bp)
	if bp.Breakpoint.ID == 0 {
		t.Fatalf("breakpoint in %s not created: %+v", dlvHandler, bp)
	}
	cont := func() *rpc.Call {
		return client.Go("RPCServer.Command", dlvCommand{Name: "continue"}, &dlvCommandOut{}, make(chan *rpc.Call, 1))
	}
	running := cont()

	// The server listens once it runs, where the listen report says: the
	// port asked for, or another one when that is taken locally (the port
	// was free when the test chose it, but a listener of doppel's own may
	// have got it from the kernel since).
	var local string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if local == "" {
			local = actualListen(report, port)
		}
		if local != "" {
			c, err := net.DialTimeout("tcp", local, time.Second)
			if err == nil {
				c.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the debuggee does not listen on port %d (locally: %q)", port, local)
		}
		time.Sleep(50 * time.Millisecond)
	}

	type response struct {
		body string
		err  error
	}
	answered := make(chan response, 1)
	go func() {
		hc := &http.Client{Timeout: 90 * time.Second}
		resp, err := hc.Get("http://" + local + "/call")
		if err != nil {
			answered <- response{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("HTTP %s", resp.Status)
		}
		answered <- response{string(b), err}
	}()

	// The request stops at the breakpoint.
	select {
	case c := <-running.Done:
		if c.Error != nil {
			t.Fatalf("continue: %v", c.Error)
		}
		st := c.Reply.(*dlvCommandOut).State
		if st.Exited || st.CurrentThread == nil || st.CurrentThread.Breakpoint == nil || st.CurrentThread.Breakpoint.ID != bp.Breakpoint.ID {
			t.Fatalf("continue did not stop at the breakpoint: %+v (thread %+v)", st, st.CurrentThread)
		}
	case r := <-answered:
		t.Fatalf("the request was answered without stopping at the breakpoint: %q %v", r.body, r.err)
	case <-time.After(30 * time.Second):
		t.Fatal("the breakpoint was not hit within 30s")
	}
	// Paused a while: nothing answers, and the session survives.
	select {
	case r := <-answered:
		t.Fatalf("answered while paused at the breakpoint: %q %v", r.body, r.err)
	case <-time.After(2 * time.Second):
	}
	running = cont()
	select {
	case r := <-answered:
		// Dialled in the pod: the peer is the pod's address (from the host
		// it would be the host end of the veth).
		want := "greeting=hello from " + s.pod.Hostname + " to " + s.pod.IP + ":"
		if r.err != nil || !strings.HasPrefix(r.body, want) {
			t.Errorf("after the breakpoint, /call answered %q (%v), want %q...", r.body, r.err, want)
		}
	case c := <-running.Done:
		t.Fatalf("continue returned before the request was answered: %v %+v", c.Error, c.Reply.(*dlvCommandOut).State)
	case <-time.After(60 * time.Second):
		t.Fatal("no answer within 60s after continuing")
	}

	// End the session: halt, then detach killing the debuggee; dlv exits.
	call("RPCServer.Command", dlvCommand{Name: "halt"}, &dlvCommandOut{})
	select {
	case <-running.Done:
	case <-time.After(30 * time.Second):
		t.Fatal("continue did not return after halt")
	}
	if err := callTimeout(client, "RPCServer.Detach", dlvDetachIn{Kill: true}, &struct{}{}, 30*time.Second); err != nil &&
		!errors.Is(err, rpc.ErrShutdown) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("RPCServer.Detach: %v", err)
	}
	select {
	case exitErr = <-done:
		exited = true
	case <-time.After(30 * time.Second):
		t.Fatal("doppel did not exit within 30s after dlv detached")
	}
	var ee *exec.ExitError
	if exitErr != nil && !errors.As(exitErr, &ee) {
		t.Errorf("doppel: %v", exitErr)
	} else if exitErr != nil {
		t.Errorf("doppel exited %d", ee.ExitCode())
	}
	if !waitGone(debuggee, 5*time.Second) {
		t.Errorf("the debuggee %d still runs", debuggee)
	}

	// The server's port is reported, dlv's own is not.
	listens, err := readListenReport(report)
	if err != nil {
		t.Fatalf("listen report: %v", err)
	}
	found := false
	for _, r := range listens {
		if r.Proto == "tcp" && strings.HasSuffix(r.Requested, ":"+strconv.Itoa(port)) {
			found = true
			if r.PID != debuggee {
				t.Errorf("the listen on %d is reported for pid %d, the debuggee is %d", port, r.PID, debuggee)
			}
		}
		if dp := ":" + strconv.Itoa(dlvPort); strings.HasSuffix(r.Requested, dp) || strings.HasSuffix(r.Actual, dp) {
			t.Errorf("dlv's API port %d is reported as the command's: %+v", dlvPort, r)
		}
	}
	if !found {
		t.Errorf("the server's listen on %d is not reported: %+v", port, listens)
	}
}

// readListenReport reads doppel exec's --report-listen file.
func readListenReport(path string) ([]listenRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var listens []listenRecord
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var rec listenRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			return listens, fmt.Errorf("line %q: %w", line, err)
		}
		listens = append(listens, rec)
	}
	return listens, nil
}

// actualListen is the loopback address where the command's TCP listen on
// port is, as the report says so far; "" before it is reported.
func actualListen(report string, port int) string {
	listens, _ := readListenReport(report)
	for _, r := range listens {
		if r.Proto != "tcp" || !strings.HasSuffix(r.Requested, ":"+strconv.Itoa(port)) {
			continue
		}
		if ap, err := netip.ParseAddrPort(r.Actual); err == nil {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ap.Port())))
		}
	}
	return ""
}

// callTimeout is client.Call with a time limit.
func callTimeout(client *rpc.Client, method string, in, out any, d time.Duration) error {
	c := client.Go(method, in, out, make(chan *rpc.Call, 1))
	select {
	case <-c.Done:
		return c.Error
	case <-time.After(d):
		return fmt.Errorf("no answer within %v", d)
	}
}

// pidsWithEnv lists the live processes whose environment holds kv.
func pidsWithEnv(kv string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, v := range strings.Split(string(b), "\x00") {
			if v == kv {
				if pidAlive(pid) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}

func procComm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}
