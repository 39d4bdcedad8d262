//go:build integration && linux

package layer_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// program is a test program in one language: argv runs one of its
// subcommands (http ADDR, udp ADDR MSG, listen ADDR, cat PATH).
type program struct {
	name string
	argv func(t *testing.T, sub string, args ...string) []string
}

var javaOnce sync.Once
var javaDir string

func javaClasses(t *testing.T) string {
	t.Helper()
	javaOnce.Do(func() {
		dir, err := os.MkdirTemp("", "doppel-java-")
		if err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command(requireTool(t, "javac"), "-d", dir, "testdata/Probe.java").CombinedOutput(); err != nil {
			t.Fatalf("javac: %v\n%s", err, b)
		}
		javaDir = dir
	})
	if javaDir == "" {
		t.Fatal("java classes not built")
	}
	return javaDir
}

func testdata(t *testing.T, name string) string {
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var programs = []program{
	{"static-go", func(t *testing.T, sub string, args ...string) []string {
		return append([]string{buildProbe(t, "static"), sub}, args...)
	}},
	{"cgo-go", func(t *testing.T, sub string, args ...string) []string {
		return append([]string{buildProbe(t, "cgo"), sub}, args...)
	}},
	{"python3", func(t *testing.T, sub string, args ...string) []string {
		return append([]string{requireTool(t, "python3"), testdata(t, "probe.py"), sub}, args...)
	}},
	{"node", func(t *testing.T, sub string, args ...string) []string {
		return append([]string{requireTool(t, "node"), testdata(t, "probe.js"), sub}, args...)
	}},
	{"java", func(t *testing.T, sub string, args ...string) []string {
		return append([]string{requireTool(t, "java"), "-cp", javaClasses(t), "Probe", sub}, args...)
	}},
}

func TestConnectRedirect(t *testing.T) {
	requireRoot(t)
	all := append(programs,
		program{"curl", func(t *testing.T, sub string, args ...string) []string {
			return []string{requireTool(t, "curl"), "-sS", "-w", "\npeer=%{remote_ip}:%{remote_port}\n", "http://" + args[0] + "/"}
		}},
		program{"sh-pipeline", func(t *testing.T, sub string, args ...string) []string {
			curl := requireTool(t, "curl")
			return []string{"/bin/sh", "-c", curl + " -sS http://" + args[0] + "/ | tr a-z A-Z | sed 's/^/body=/'; echo peer=" + args[0]}
		}},
	)
	for _, p := range all {
		t.Run(p.name, func(t *testing.T) {
			srv := httpServer(t, "server")
			h := newHandler()
			h.redirect(remoteHTTP, srv)
			r := run(t, h, runOpts{}, p.argv(t, "http", remoteHTTP.String())...)
			if r.code != 0 {
				t.Fatalf("exit %d", r.code)
			}
			body := "hello from server"
			if p.name == "sh-pipeline" {
				body = "HELLO FROM SERVER"
			}
			// The program reaches the loopback server, and its own view of
			// the peer (getpeername) is the original destination.
			wantContains(t, "output", r.stdout, body, "peer="+remoteHTTP.String())
			h.checkNoLeak(t)
		})
	}
}

func TestConnectFail(t *testing.T) {
	requireRoot(t)
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			h := newHandler()
			h.refuse(remoteRefused)
			r := run(t, h, runOpts{}, p.argv(t, "http", remoteRefused.String())...)
			if !strings.Contains(r.stdout, "ECONNREFUSED") {
				t.Errorf("want ECONNREFUSED in the program, got %q", r.stdout)
			}
		})
	}
}

// connectTwiceScript connects a non-blocking socket, waits until it is
// writable and connects again, as Ruby's Socket.tcp with a connect timeout
// does: the kernel must answer the second connect (EISCONN, which Python
// reports as success), with no second dial.
const connectTwiceScript = `
import errno, select, socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket()
s.setblocking(False)
try:
    s.connect((host, int(port)))
except BlockingIOError:
    pass
select.select([], [s], [], 5)
try:
    s.connect((host, int(port)))
    print("second=ok")
except OSError as e:
    print("second=%s" % errno.errorcode[e.errno])
`

func TestConnectTwice(t *testing.T) {
	requireRoot(t)
	h := newHandler()
	h.redirect(remoteHTTP, httpServer(t, "server"))
	r := run(t, h, runOpts{}, requireTool(t, "python3"), "-c", connectTwiceScript, remoteHTTP.String())
	wantContains(t, "output", r.stdout, "second=ok")
	n := 0
	for _, c := range h.connects {
		if c.Dst == remoteHTTP {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d connect requests for %s, want 1", n, remoteHTTP)
	}
}
