//go:build e2e

package e2e

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.lsp.dev/jsonrpc2"

	"github.com/doppel-dev/doppel/agent/target"
	"github.com/doppel-dev/doppel/helper/ide"
	"github.com/doppel-dev/doppel/test/e2e/framework"
	"github.com/doppel-dev/doppel/test/tools"
)

// `doppel ide` end to end: the launch configurations it resolves for the
// staging backend's target run a local debuggee that steals
// deployment/backend's traffic — a Go server under the real `dlv dap`
// (cgo and static builds), driven through a breakpoint, and a Node server
// under preload mode.

// installDelve returns dlv at tools.DelveVersion; not being able to install
// it fails the test.
func installDelve(t *testing.T) string {
	t.Helper()
	bin, err := tools.Delve()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// buildDebugBackend builds the staging backend for debugging (no
// optimizations), with or without cgo.
var debugBackends sync.Map

func buildDebugBackend(t *testing.T, cgo bool) string {
	t.Helper()
	if v, ok := debugBackends.Load(cgo); ok {
		return v.(string)
	}
	bin := filepath.Join(t.TempDir(), fmt.Sprintf("backend-cgo%v", cgo))
	cmd := exec.Command("go", "build", "-gcflags=all=-N -l", "-o", bin, "./test/apps/staging/backend")
	cmd.Dir = framework.RepoRoot()
	cmd.Env = append(os.Environ(), fmt.Sprintf("CGO_ENABLED=%d", map[bool]int{false: 0, true: 1}[cgo]))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the backend (cgo %v): %v\n%s", cgo, err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	dynamic := false
	for _, p := range f.Progs {
		dynamic = dynamic || p.Type == elf.PT_INTERP
	}
	f.Close()
	if dynamic != cgo {
		t.Fatalf("%s: dynamically linked %v, want %v", bin, dynamic, cgo)
	}
	debugBackends.Store(cgo, bin)
	return bin
}

// ideWorkspace is a workspace folder whose config steals the staging
// backend's traffic without a filter.
func ideWorkspace(t *testing.T) string {
	return configDir(t, execConfig(t, "staging", "deployment/backend")+"feature:\n  network:\n    incoming: steal\n")
}

// clusterGet asks the staging backend from a pod of the cluster.
func clusterGet(t *testing.T, ns, pod, timeout string) (string, error) {
	out, stderr, err := cluster.Exec(framework.Context(t, 2*time.Minute), ns, pod, "main",
		"/toolbox", "get", "-timeout", timeout, "http://backend.staging/")
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, stderr)
	}
	return strings.TrimSpace(out), nil
}

func TestIDEDelve(t *testing.T) {
	deployStaging(t)
	dlv := installDelve(t)
	ns := cluster.Namespace(t, "ide-client")
	client := cluster.RunPod(t, ns, framework.ToolboxPod("client", "sleep"))
	for _, cgo := range []bool{true, false} {
		name := map[bool]string{true: "cgo", false: "static"}[cgo]
		t.Run(name, func(t *testing.T) {
			bin := buildDebugBackend(t, cgo)
			ws := ideWorkspace(t)
			p := startIDE(t, "DOPPEL_DLV="+dlv)
			var init ide.InitializeResult
			p.mustCall(ide.MethodInitialize, ide.InitializeParams{ClientName: "e2e", WorkspaceFolders: []string{ws}}, &init, time.Minute)

			greeting := "debugged locally (" + name + ")"
			launch := map[string]any{"type": "go", "request": "launch", "name": "backend", "mode": "exec", "program": bin,
				"env": map[string]any{"GREETING": greeting}}
			var res ide.ResolveLaunchResult
			p.mustCall(ide.MethodResolveLaunch, ide.ResolveLaunchParams{Launch: launch, WorkspaceFolder: ws}, &res, 3*time.Minute)
			env, _ := res.Launch["env"].(map[string]any)
			if res.Launch["host"] != "127.0.0.1" || res.Launch["port"] == nil || env["DB_HOST"] != "postgres" || env["GREETING"] != greeting ||
				res.Target == nil || res.Target.Path != "deployment/backend" || res.Target.Pod == "" {
				t.Fatalf("resolved launch: %+v", res)
			}
			p.waitNote(ide.NotifySessionState, 5*time.Second, res.SessionID, `"ready"`)

			// The Go extension connects to the Delve doppel started.
			dap := dialDAP(t, fmt.Sprintf("%v:%v", res.Launch["host"], res.Launch["port"]))
			dap.request("initialize", map[string]any{"clientID": "vscode", "adapterID": "go", "linesStartAt1": true, "columnsStartAt1": true, "pathFormat": "path"}, 30*time.Second)
			dap.request("launch", res.Launch, 2*time.Minute)
			dap.event("initialized", 30*time.Second, nil)
			handlers := filepath.Join(framework.RepoRoot(), "test/apps/staging/backend/handlers.go")
			bp := dap.request("setBreakpoints", map[string]any{"source": map[string]any{"path": handlers},
				"breakpoints": []any{map[string]any{"line": 33}}}, 30*time.Second)
			if !strings.Contains(fmt.Sprint(bp["body"]), "verified:true") {
				t.Fatalf("breakpoint not verified: %v", bp)
			}
			dap.request("configurationDone", map[string]any{}, 30*time.Second)
			p.waitNote(ide.NotifyNotice, time.Minute, "port 8080 of the target: steal")

			// A request from the cluster stops at the breakpoint.
			type answer struct {
				body string
				err  error
			}
			first := make(chan answer, 1)
			go func() {
				body, err := clusterGet(t, ns, client.Name, "90s")
				first <- answer{body, err}
			}()
			stopped := dap.event("stopped", time.Minute, func(m map[string]any) bool {
				body, _ := m["body"].(map[string]any)
				return body["reason"] == "breakpoint"
			})
			pausedAt := time.Now()
			threadID := stopped["body"].(map[string]any)["threadId"]
			p.mustCall(ide.MethodDebuggeeState, ide.DebuggeeStateParams{SessionID: res.SessionID, Paused: true}, nil, 30*time.Second)
			var sessions ide.ListSessionsResult
			p.mustCall(ide.MethodListSessions, nil, &sessions, 10*time.Second)
			if len(sessions.Sessions) != 1 || !sessions.Sessions[0].Paused || sessions.Sessions[0].State != "ready" {
				t.Errorf("sessions while paused: %+v", sessions)
			}

			// While paused, new connections go to the cluster's backend:
			// the breakpoint blocks nobody else (on_pause: cluster).
			if body, err := clusterGet(t, ns, client.Name, "20s"); err != nil || body != clusterGreeting {
				t.Errorf("a request while paused: %q %v, want the cluster's %q", body, err, clusterGreeting)
			}
			select {
			case a := <-first:
				t.Fatalf("the stopped request was answered while paused: %q %v", a.body, a.err)
			case <-time.After(time.Until(pausedAt.Add(20 * time.Second))):
			}
			// Continue: the stopped request completes with the local answer.
			dap.request("continue", map[string]any{"threadId": threadID}, 30*time.Second)
			p.mustCall(ide.MethodDebuggeeState, ide.DebuggeeStateParams{SessionID: res.SessionID, Paused: false}, nil, 30*time.Second)
			select {
			case a := <-first:
				if a.err != nil || a.body != greeting {
					t.Errorf("after continue: %q %v, want %q", a.body, a.err, greeting)
				}
			case <-time.After(time.Minute):
				t.Fatal("no answer within 1m after continue")
			}
			t.Logf("paused %s at the breakpoint", time.Since(pausedAt).Round(time.Second))

			// The debug session ends; so does the doppel session.
			dap.send("disconnect", map[string]any{"terminateDebuggee": true})
			p.mustCall(ide.MethodEndSession, ide.SessionParams{SessionID: res.SessionID}, nil, time.Minute)
			p.waitNote(ide.NotifySessionState, 10*time.Second, res.SessionID, `"ended"`)
			framework.Eventually(t, 30*time.Second, func() error {
				if body, err := clusterGet(t, ns, client.Name, "10s"); err != nil || body != clusterGreeting {
					return fmt.Errorf("after the session: %q %v", body, err)
				}
				return nil
			})
			p.shutdown()
		})
	}
}

func TestIDENode(t *testing.T) {
	deployStaging(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed")
	}
	shim, err := buildShim()
	if err != nil {
		t.Fatal(err)
	}
	ns := cluster.Namespace(t, "ide-node")
	client := cluster.RunPod(t, ns, framework.ToolboxPod("client", "sleep"))
	ws := ideWorkspace(t)
	server := filepath.Join(ws, "server.js")
	os.WriteFile(server, []byte(`require('http').createServer((req, res) => {
  res.end('node under doppel ide, db ' + process.env.DB_HOST + '\n');
}).listen(8080, () => console.log('listening'));
`), 0o644)
	p := startIDE(t, "DOPPEL_SHIM="+shim)
	p.mustCall(ide.MethodInitialize, ide.InitializeParams{ClientName: "e2e", WorkspaceFolders: []string{ws}}, nil, time.Minute)
	launch := map[string]any{"type": "node", "request": "launch", "name": "server", "program": server,
		"runtimeArgs": []any{"--inspect=127.0.0.1:9239"}, "env": map[string]any{"NODE_ENV": "development"}}
	var res ide.ResolveLaunchResult
	p.mustCall(ide.MethodResolveLaunch, ide.ResolveLaunchParams{Launch: launch, WorkspaceFolder: ws}, &res, 3*time.Minute)
	env, _ := res.Launch["env"].(map[string]any)
	if env["LD_PRELOAD"] != shim || env["DOPPEL_LAYER_SOCKET"] == nil || env["DB_HOST"] != "postgres" || env["NODE_ENV"] != "development" {
		t.Fatalf("resolved env: %v", env)
	}
	// What js-debug does with it: run node with the launch's env.
	cmd := exec.Command(node, "--inspect=127.0.0.1:9239", server)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%v", k, v))
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill() // the node this test started
		cmd.Wait()
		if t.Failed() {
			t.Logf("node:\n%s", out.String())
		}
	}()
	p.waitNote(ide.NotifyNotice, time.Minute, "port 8080 of the target: steal")
	framework.Eventually(t, 30*time.Second, func() error {
		body, err := clusterGet(t, ns, client.Name, "10s")
		if err != nil || body != "node under doppel ide, db postgres" {
			return fmt.Errorf("from the cluster: %q %v", body, err)
		}
		return nil
	})
	if strings.Contains(p.notesText(), "9239") {
		t.Errorf("the inspector's port was subscribed:\n%s", p.notesText())
	}
	p.shutdown()
}

// A missing target is a cluster error with its reason, and the session
// that was starting ends with it.
func TestIDEMissingTarget(t *testing.T) {
	ws := configDir(t, execConfig(t, "staging", "deployment/backend"))
	p := startIDE(t)
	p.mustCall(ide.MethodInitialize, ide.InitializeParams{ClientName: "e2e"}, nil, time.Minute)
	err := p.call(ide.MethodResolveLaunch, ide.ResolveLaunchParams{Launch: map[string]any{"type": "node", "request": "launch"},
		WorkspaceFolder: ws, Target: "deployment/does-not-exist"}, nil, time.Minute)
	var rpc *jsonrpc2.Error
	if !errors.As(err, &rpc) || rpc.Code != ide.CodeCluster {
		t.Fatalf("resolveLaunch of a missing target: %v", err)
	}
	var data ide.ClusterErrorData
	if json.Unmarshal(rpc.Data, &data); data.Reason != "not_found" || data.Category != "user" {
		t.Errorf("error data: %s", rpc.Data)
	}
	p.waitNote(ide.NotifySessionState, 5*time.Second, `"ended"`, "does-not-exist")
	p.shutdown()
}

// An agent lost for good ends the IDE's session: it says so, takes no
// more launches or states, and stays listed until the IDE ends it.
func TestIDEAgentLost(t *testing.T) {
	ns, tgt := sleeper(t, "ide-lost")
	ctx := framework.Context(t, 3*time.Minute)
	shim, err := buildShim()
	if err != nil {
		t.Fatal(err)
	}
	ws := configDir(t, execConfig(t, ns, "pod/target"))
	p := startIDE(t, "DOPPEL_SHIM="+shim)
	p.mustCall(ide.MethodInitialize, ide.InitializeParams{ClientName: "e2e", WorkspaceFolders: []string{ws}}, nil, time.Minute)
	launch := map[string]any{"type": "node", "request": "launch", "name": "server", "program": "server.js"}
	var res ide.ResolveLaunchResult
	p.mustCall(ide.MethodResolveLaunch, ide.ResolveLaunchParams{Launch: launch, WorkspaceFolder: ws}, &res, 3*time.Minute)

	agent := agentPod(t, ctx, ns)
	pid, err := target.FindContainer("/proc", agent.Status.ContainerStatuses[0].ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil { // the agent this test's session started
		t.Fatal(err)
	}
	p.waitNote(ide.NotifySessionState, time.Minute, res.SessionID, `"ended"`, `"category":"cluster"`)

	var sessions ide.ListSessionsResult
	p.mustCall(ide.MethodListSessions, nil, &sessions, 10*time.Second)
	if len(sessions.Sessions) != 1 || sessions.Sessions[0].State != ide.StateEnded {
		t.Errorf("sessions after the agent was lost: %+v", sessions)
	}
	wantUnknown := func(what string, err error) {
		t.Helper()
		var rpc *jsonrpc2.Error
		if !errors.As(err, &rpc) || rpc.Code != ide.CodeUnknownSession {
			t.Errorf("%s of the ended session: %v, want code %d", what, err, ide.CodeUnknownSession)
		}
	}
	wantUnknown("resolveLaunch", p.call(ide.MethodResolveLaunch,
		ide.ResolveLaunchParams{Launch: launch, WorkspaceFolder: ws, SessionID: res.SessionID}, nil, time.Minute))
	wantUnknown("debuggeeState", p.call(ide.MethodDebuggeeState,
		ide.DebuggeeStateParams{SessionID: res.SessionID, Paused: true}, nil, time.Minute))

	// The IDE ends it, which releases the rest; a new launch starts anew.
	p.mustCall(ide.MethodEndSession, ide.SessionParams{SessionID: res.SessionID}, nil, time.Minute)
	p.mustCall(ide.MethodListSessions, nil, &sessions, 10*time.Second)
	if len(sessions.Sessions) != 0 {
		t.Errorf("sessions after endSession: %+v", sessions)
	}
	var again ide.ResolveLaunchResult
	p.mustCall(ide.MethodResolveLaunch, ide.ResolveLaunchParams{Launch: launch, WorkspaceFolder: ws}, &again, 3*time.Minute)
	if again.SessionID == res.SessionID {
		t.Errorf("the new launch reused the ended session")
	}
	p.shutdown()
	untouched(t, ctx, tgt)
}
