//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/helper/ide"
	"github.com/doppel-dev/doppel/internal/testnet"
	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// Python and Java launches resolved by `doppel ide`, run the way their IDE
// debuggers run them — debugpy's adapter launching the program with the
// resolved env, the JVM with a JDWP agent that jdb attaches to — each
// stealing deployment/backend's traffic, stopped at a breakpoint by a
// request from the cluster and answering it after continue. The
// debuggers' own ports are never subscribed.

// The interpreter the Debian python3-debugpy package (Makefile
// TEST_PACKAGES) installs into.
const debianPython = "/usr/bin/python3"

// interpServer is a request from the cluster that a debugger stops at a
// breakpoint in a local server: it must not be answered while stopped, and
// must get want after continue.
type interpServer struct {
	t      *testing.T
	ns     string
	client string
	answer chan [2]string
}

func (s *interpServer) send() {
	s.answer = make(chan [2]string, 1)
	go func() {
		body, err := clusterGet(s.t, s.ns, s.client, "90s")
		s.answer <- [2]string{body, fmt.Sprint(err)}
	}()
}

func (s *interpServer) notAnsweredFor(d time.Duration) {
	s.t.Helper()
	select {
	case a := <-s.answer:
		s.t.Fatalf("answered while stopped at the breakpoint: %q %s", a[0], a[1])
	case <-time.After(d):
	}
}

func (s *interpServer) answered(want string) {
	s.t.Helper()
	select {
	case a := <-s.answer:
		if a[0] != want || a[1] != "<nil>" {
			s.t.Errorf("after continue the cluster got %q (%s), want %q", a[0], a[1], want)
		}
	case <-time.After(time.Minute):
		s.t.Fatal("no answer within 1m after continue")
	}
}

func TestIDEPython(t *testing.T) {
	deployStaging(t)
	if out, err := exec.Command(debianPython, "-c", "import debugpy").CombinedOutput(); err != nil {
		t.Fatalf("debugpy (Debian package python3-debugpy, make deps): %v\n%s", err, out)
	}
	shim, err := buildShim()
	if err != nil {
		t.Fatal(err)
	}
	ns := cluster.Namespace(t, "ide-python")
	client := cluster.RunPod(t, ns, framework.ToolboxPod("client", "sleep"))
	ws := ideWorkspace(t)
	server := filepath.Join(ws, "server.py")
	os.WriteFile(server, []byte(`import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/":
            return self.answer(b"ok\n")
        self.answer(("python under doppel ide, db " + os.environ["DB_HOST"] + "\n").encode())

    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("", 8080), Handler).serve_forever()
`), 0o644)
	// Only the cluster's request to / stops there: the target's probes
	// (/readyz, /healthz), stolen with the port, must not stop the
	// single-threaded server again after continue.
	const bpLine = 7 // self.answer(("python under ...

	p := startIDE(t, "DOPPEL_SHIM="+shim)
	p.mustCall(ide.MethodInitialize, ide.InitializeParams{ClientName: "e2e", WorkspaceFolders: []string{ws}}, nil, time.Minute)
	launch := map[string]any{"type": "debugpy", "request": "launch", "name": "server", "program": server,
		"python": debianPython, "console": "internalConsole", "justMyCode": true, "env": map[string]any{"APP_MODE": "debug"}}
	var res ide.ResolveLaunchResult
	p.mustCall(ide.MethodResolveLaunch, ide.ResolveLaunchParams{Launch: launch, WorkspaceFolder: ws}, &res, 3*time.Minute)
	env, _ := res.Launch["env"].(map[string]any)
	if env["LD_PRELOAD"] != shim || env["DOPPEL_LAYER_SOCKET"] == nil || env["DB_HOST"] != "postgres" || env["APP_MODE"] != "debug" {
		t.Fatalf("resolved env: %v", env)
	}

	// What the Python extension does: debugpy's adapter, outside the
	// session (its own env), launches the program with the launch's env.
	adapterPort := freeLocalPort(t)
	adapter := exec.Command(debianPython, "-m", "debugpy.adapter", "--host", "127.0.0.1", "--port", fmt.Sprint(adapterPort))
	var adapterOut syncBuffer
	adapter.Stdout, adapter.Stderr = &adapterOut, &adapterOut
	if err := adapter.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		adapter.Process.Kill() // the adapter this test started
		adapter.Wait()
		if t.Failed() {
			t.Logf("debugpy adapter:\n%s", adapterOut.String())
		}
	}()
	waitListening(t, adapterPort)
	dap := dialDAP(t, fmt.Sprintf("127.0.0.1:%d", adapterPort))
	dap.request("initialize", map[string]any{"clientID": "vscode", "adapterID": "debugpy", "linesStartAt1": true, "columnsStartAt1": true, "pathFormat": "path"}, 30*time.Second)
	launched := dap.send("launch", res.Launch) // answered after configurationDone
	dap.event("initialized", time.Minute, nil)
	bp := dap.request("setBreakpoints", map[string]any{"source": map[string]any{"path": server},
		"breakpoints": []any{map[string]any{"line": bpLine}}}, 30*time.Second)
	if !strings.Contains(fmt.Sprint(bp["body"]), "verified:true") {
		t.Fatalf("breakpoint not verified: %v", bp)
	}
	dap.request("configurationDone", map[string]any{}, 30*time.Second)
	dap.wait("response to launch", time.Minute, func(m map[string]any) bool {
		return m["type"] == "response" && m["request_seq"] == float64(launched) && m["success"] == true
	})
	p.waitNote(ide.NotifyNotice, time.Minute, "port 8080 of the target: steal")

	req := &interpServer{t: t, ns: ns, client: client.Name}
	req.send()
	stopped := dap.event("stopped", time.Minute, func(m map[string]any) bool {
		body, _ := m["body"].(map[string]any)
		return body["reason"] == "breakpoint"
	})
	req.notAnsweredFor(3 * time.Second)
	dap.request("continue", map[string]any{"threadId": stopped["body"].(map[string]any)["threadId"]}, 30*time.Second)
	req.answered("python under doppel ide, db postgres")

	// debugpy's own listeners (its adapter connection, the debuggee's
	// server on a kernel-chosen port) are not subscribed: 8080 is the
	// only port.
	for _, port := range subscribedPorts(p.notesText()) {
		if port != "8080" {
			t.Errorf("port %s subscribed, want only 8080:\n%s", port, p.notesText())
		}
	}
	dap.send("disconnect", map[string]any{"terminateDebuggee": true})
	p.mustCall(ide.MethodEndSession, ide.SessionParams{SessionID: res.SessionID}, nil, time.Minute)
	p.shutdown()
}

func TestIDEJava(t *testing.T) {
	deployStaging(t)
	jdb, err := exec.LookPath("jdb")
	if err != nil {
		t.Fatal("jdb is not installed (openjdk-17-jdk-headless, make deps)")
	}
	shim, err := buildShim()
	if err != nil {
		t.Fatal(err)
	}
	ns := cluster.Namespace(t, "ide-java")
	client := cluster.RunPod(t, ns, framework.ToolboxPod("client", "sleep"))
	ws := ideWorkspace(t)
	classes := filepath.Join(ws, "classes")
	src := filepath.Join(ws, "Server.java")
	os.WriteFile(src, []byte(`import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;

public class Server {
    static String greeting() {
        return "java under doppel ide, db " + System.getenv("DB_HOST") + "\n";
    }

    public static void main(String[] args) throws Exception {
        HttpServer server = HttpServer.create(new InetSocketAddress(8080), 0);
        server.createContext("/", ex -> {
            // The probes (/readyz, /healthz) never reach the breakpoint.
            byte[] body = (ex.getRequestURI().getPath().equals("/") ? greeting() : "ok\n").getBytes();
            ex.sendResponseHeaders(200, body.length);
            ex.getResponseBody().write(body);
            ex.close();
        });
        server.start();
    }
}
`), 0o644)
	if out, err := exec.Command("javac", "-g", "-d", classes, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	jdwpPort := freeLocalPort(t)
	jdwp := fmt.Sprintf("-agentlib:jdwp=transport=dt_socket,server=y,suspend=y,address=127.0.0.1:%d", jdwpPort)

	p := startIDE(t, "DOPPEL_SHIM="+shim)
	p.mustCall(ide.MethodInitialize, ide.InitializeParams{ClientName: "e2e", WorkspaceFolders: []string{ws}}, nil, time.Minute)
	launch := map[string]any{"type": "java", "request": "launch", "name": "server", "mainClass": "Server",
		"classPaths": []any{classes}, "vmArgs": jdwp}
	var res ide.ResolveLaunchResult
	p.mustCall(ide.MethodResolveLaunch, ide.ResolveLaunchParams{Launch: launch, WorkspaceFolder: ws}, &res, 3*time.Minute)
	env, _ := res.Launch["env"].(map[string]any)
	if env["LD_PRELOAD"] != shim || env["DOPPEL_LAYER_SOCKET"] == nil || env["DB_HOST"] != "postgres" {
		t.Fatalf("resolved env: %v", env)
	}

	// What the Java debugger does: run the JVM with the launch's vmArgs and
	// env, and attach to its JDWP agent.
	jvm := exec.Command("java", jdwp, "-cp", classes, "Server")
	jvm.Env = os.Environ()
	for k, v := range env {
		jvm.Env = append(jvm.Env, fmt.Sprintf("%s=%v", k, v))
	}
	var jvmOut syncBuffer
	jvm.Stdout, jvm.Stderr = &jvmOut, &jvmOut
	if err := jvm.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		jvm.Process.Kill() // the JVM this test started
		jvm.Wait()
		if t.Failed() {
			t.Logf("java:\n%s", jvmOut.String())
		}
	}()
	waitListening(t, jdwpPort)
	dbg := startJdb(t, jdb, jdwpPort)
	dbg.command("stop in Server.greeting")
	dbg.expect("Deferring breakpoint Server.greeting", 30*time.Second)
	dbg.command("cont")
	p.waitNote(ide.NotifyNotice, time.Minute, "port 8080 of the target: steal")

	req := &interpServer{t: t, ns: ns, client: client.Name}
	req.send()
	dbg.expect("Breakpoint hit:", time.Minute)
	req.notAnsweredFor(3 * time.Second)
	dbg.command("cont")
	req.answered("java under doppel ide, db postgres")

	for _, port := range subscribedPorts(p.notesText()) {
		if port != "8080" {
			t.Errorf("port %s subscribed (JDWP is %d), want only 8080:\n%s", port, jdwpPort, p.notesText())
		}
	}
	dbg.command("exit")
	p.mustCall(ide.MethodEndSession, ide.SessionParams{SessionID: res.SessionID}, nil, time.Minute)
	p.shutdown()
}

// jdbProc is jdb attached to a JVM, driven through its stdin.
type jdbProc struct {
	t   *testing.T
	in  io.WriteCloser
	out *syncBuffer
	cmd *exec.Cmd
}

func startJdb(t *testing.T, jdb string, port int) *jdbProc {
	t.Helper()
	d := &jdbProc{t: t, out: &syncBuffer{}}
	d.cmd = exec.Command(jdb, "-attach", fmt.Sprintf("127.0.0.1:%d", port))
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	var err error
	if d.in, err = d.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Kill() // the jdb this test started
		d.cmd.Wait()
		if t.Failed() {
			t.Logf("jdb:\n%s", d.out.String())
		}
	})
	d.expect("Initializing jdb", 30*time.Second)
	return d
}

func (d *jdbProc) command(c string) {
	if _, err := io.WriteString(d.in, c+"\n"); err != nil {
		d.t.Fatalf("jdb %s: %v", c, err)
	}
}

// expect waits for s in jdb's output.
func (d *jdbProc) expect(s string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(d.out.String(), s) {
		if time.Now().After(deadline) {
			d.t.Fatalf("jdb did not print %q within %s:\n%s", s, timeout, d.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeLocalPort is a port free right now.
func freeLocalPort(t *testing.T) int { return testnet.FreePort(t) }

// waitListening waits for a listening TCP socket on the port (from
// /proc/net: a probe connection would be a client to debug adapters that
// take only one).
func waitListening(t *testing.T, port int) {
	t.Helper()
	want := fmt.Sprintf(":%04X ", port)
	deadline := time.Now().Add(time.Minute)
	for {
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			b, _ := os.ReadFile(f)
			for _, line := range strings.Split(string(b), "\n") {
				fields := strings.Fields(line)
				if len(fields) > 3 && strings.HasSuffix(fields[1]+" ", want) && fields[3] == "0A" {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on port %d", port)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// subscribedPorts are the target ports the session's notices name.
func subscribedPorts(notes string) []string {
	var ports []string
	for _, m := range subscribedPort.FindAllStringSubmatch(notes, -1) {
		ports = append(ports, m[1])
	}
	return ports
}

var subscribedPort = regexp.MustCompile(`port (\d+) of the target:`)
