//go:build integration && linux

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/doppel-dev/doppel/test/integration/podns"
)

// runtime is one probe program.
type runtime struct {
	name string
	// cmd is the command line; files are copied from the repository into
	// the working directory first (a project's own sources are local), as
	// dst -> repository path.
	cmd   func(s *suite) []string
	files map[string]string
	env   []string
	// na are checks that do not apply to the runtime, with the reason.
	na map[string]string
	// extra are runtime-specific expectations: key -> want.
	extra func(s *suite) map[string]string
	// stderr must contain these.
	stderr []string
}

var runtimes = []runtime{
	{
		name: "go-static",
		cmd:  func(s *suite) []string { return []string{s.goStatic, "-resolver", "go"} },
		extra: func(s *suite) map[string]string {
			return map[string]string{"go.cgo": "false"}
		},
	},
	{
		name: "go-cgo",
		cmd:  func(s *suite) []string { return []string{s.goCgo, "-resolver", "cgo"} },
		// +1: Go says which resolver each lookup used.
		env:    []string{"GODEBUG=netdns=cgo+1"},
		stderr: []string{"forcing use of the cgo resolver"},
		extra: func(s *suite) map[string]string {
			return map[string]string{"go.cgo": "true"}
		},
	},
	{
		name:  "python",
		cmd:   func(s *suite) []string { return []string{"python3", "probe.py"} },
		files: map[string]string{"probe.py": "test/apps/probes/python/probe.py"},
	},
	{
		name:  "node",
		cmd:   func(s *suite) []string { return []string{"node", "probe.js"} },
		files: map[string]string{"probe.js": "test/apps/probes/node/probe.js"},
		extra: func(s *suite) map[string]string {
			return map[string]string{
				"dns.resolve4.fqdn":    s.pod.IP,
				"dns.resolve4.unknown": "NXDOMAIN",
			}
		},
	},
	{
		name: "java",
		cmd:  func(s *suite) []string { return []string{"java", "-cp", s.javaDir, "Probe"} },
		extra: func(s *suite) map[string]string {
			return map[string]string{"tcp.nio.greeting": "hello from " + s.pod.Hostname + " to " + s.pod.IP + ":"}
		},
	},
	{
		name:  "curl",
		cmd:   func(s *suite) []string { return []string{"bash", "probe.sh"} },
		files: map[string]string{"probe.sh": "test/apps/probes/shell/probe.sh"},
		na: map[string]string{
			"listen":          "curl and bash cannot listen",
			"udp.unconnected": "bash's /dev/udp connects",
		},
		extra: func(s *suite) map[string]string {
			return map[string]string{
				"http.body": fmt.Sprintf("pod-http host=%s path=/probe peer=%s:", s.pod.Hostname, s.pod.IP),
				"http.peer": fmt.Sprintf("%s:%d", s.pod.IP, podns.HTTPPort),
			}
		},
	},
}

// check is one of the probes' checks: the keys it reads and what they must
// be. A want ending in ":" is a prefix.
type check struct {
	name string
	want func(s *suite, listen, taken int) map[string]string
}

var checks = []check{
	{"env", func(s *suite, _, _ int) map[string]string {
		return map[string]string{"env.POD_SECRET": s.pod.Secret}
	}},
	{"dns", func(s *suite, _, _ int) map[string]string {
		return map[string]string{
			"dns.short":   s.pod.IP,
			"dns.fqdn":    s.pod.IP,
			"dns.unknown": "NXDOMAIN",
			"dns.hosts":   s.pod.IP,
		}
	}},
	{"tcp", func(s *suite, _, _ int) map[string]string {
		return map[string]string{
			// The pod's server saw the connection come from the pod's own
			// address: it was made inside the pod (from the host it would
			// come from the veth's host end).
			"tcp.greeting": "hello from " + s.pod.Hostname + " to " + s.pod.IP + ":",
			"tcp.echo":     "echo:ping",
			// The program's own view of its peer (getpeername).
			"tcp.peer": fmt.Sprintf("%s:%d", s.pod.IP, podns.TCPPort),
		}
	}},
	{"udp", func(s *suite, _, _ int) map[string]string {
		return map[string]string{"udp.echo": "echo:ping-udp"}
	}},
	{"udp.unconnected", func(s *suite, _, _ int) map[string]string {
		return map[string]string{
			"udp.unconnected.echo": "echo:ping-unconnected",
			// recvfrom's sender is the pod's server, not the session's relay.
			"udp.unconnected.from": fmt.Sprintf("%s:%d", s.pod.IP, podns.UDPPort),
		}
	}},
	{"files", func(s *suite, _, _ int) map[string]string {
		return map[string]string{
			"file.message":  strings.TrimSpace(s.pod.Message),
			"file.list":     strings.Join(podns.PodinfoEntries, ","),
			"file.stat_dir": "true",
		}
	}},
	{"hostname", func(s *suite, _, _ int) map[string]string {
		// The pod's /etc/hostname. (gethostname(2), which is uname(2), still
		// gives the local name: the probes print it as info.hostname.)
		return map[string]string{"etc.hostname": s.pod.Hostname}
	}},
	{"refused", func(s *suite, _, _ int) map[string]string {
		return map[string]string{"tcp.refused": "ECONNREFUSED"}
	}},
	{"listen", func(s *suite, listen, taken int) map[string]string {
		return map[string]string{"listen.port": strconv.Itoa(listen), "listen.taken_port": strconv.Itoa(taken)}
	}},
}

func matches(got, want string) bool {
	if strings.HasSuffix(want, ":") {
		return strings.HasPrefix(got, want)
	}
	return got == want
}

func copyFiles(t *testing.T, s *suite, files map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for dst, src := range files {
		b, err := os.ReadFile(filepath.Join(s.repo, src))
		if err != nil {
			t.Fatal(err)
		}
		out[dst] = string(b)
	}
	return out
}

// TestProbes runs every runtime's probe under doppel exec and checks each
// result: the runtime × check table of the suite.
func TestProbes(t *testing.T) { probeSuite(t, need(t), nil, nil, nil) }

// TestProbesPreload runs the probes of the dynamically linked runtimes with
// libdoppel.so preloaded instead of the launcher, the way IDE launches are
// intercepted (statically linked Go ignores LD_PRELOAD).
func TestProbesPreload(t *testing.T) {
	s := need(t)
	buildShim(t, s)
	probeSuite(t, s, []string{"--preload"}, func(rt runtime) bool { return rt.name != "go-static" }, nil)
}

// TestProbesWrap: in a preloaded launch (an IDE's), `doppel wrap -- CMD`
// runs CMD under the session's launcher, so statically linked Go is
// intercepted too; java once more, as a dynamically linked program run
// that way.
func TestProbesWrap(t *testing.T) {
	s := need(t)
	buildShim(t, s)
	probeSuite(t, s, []string{"--preload"}, func(rt runtime) bool { return rt.name == "go-static" || rt.name == "java" },
		func(cmd []string) []string { return append([]string{s.doppel, "wrap", "--"}, cmd...) })
}

func buildShim(t *testing.T, s *suite) {
	t.Helper()
	shim := exec.Command("make", "-s", "-C", filepath.Join(s.repo, "layer/shim"),
		"OUT="+filepath.Join(filepath.Dir(s.doppel), "libdoppel.so"))
	if out, err := shim.CombinedOutput(); err != nil {
		t.Fatalf("build libdoppel.so: %v\n%s", err, out)
	}
}

// probeSuite runs each runtime's probe under doppel exec with args and
// checks every result; wrap, if not nil, changes the command line.
func probeSuite(t *testing.T, s *suite, args []string, only func(runtime) bool, wrap func([]string) []string) {
	for _, rt := range runtimes {
		if only != nil && !only(rt) {
			continue
		}
		t.Run(rt.name, func(t *testing.T) {
			cmd := rt.cmd(s)
			if _, err := exec.LookPath(cmd[0]); err != nil {
				t.Fatalf("%s is needed: %v", cmd[0], err)
			}
			if wrap != nil {
				cmd = wrap(cmd)
			}
			listen, taken := freePort(t), holdPort(t)
			res := s.doppelExec(t, run{
				Config: defaultBaseConfig,
				Args:   args,
				Cmd:    cmd,
				Env:    append(s.probeEnv(listen, taken), rt.env...),
				Files:  copyFiles(t, s, rt.files),
			})
			failed := false
			defer func() {
				if failed || t.Failed() {
					logResult(t, res)
				}
			}()
			if res.Code != 0 || res.Values["done"] != "1" {
				failed = true
				t.Errorf("probe exit %d, done=%q", res.Code, res.Values["done"])
			}
			for _, c := range checks {
				t.Run(c.name, func(t *testing.T) {
					if why, ok := rt.na[c.name]; ok {
						t.Logf("n/a: %s", why)
						return
					}
					for key, want := range c.want(s, listen, taken) {
						if why, ok := rt.na[key]; ok {
							t.Logf("%s n/a: %s", key, why)
							continue
						}
						got, ok := res.Values[key]
						if !ok {
							failed = true
							t.Errorf("%s: no result", key)
						} else if !matches(got, want) {
							failed = true
							t.Errorf("%s = %q, want %q", key, got, want)
						}
					}
					if c.name == "listen" {
						if !checkListenReport(t, res, listen, taken) {
							failed = true
						}
					}
				})
			}
			if rt.extra != nil || rt.stderr != nil {
				t.Run("specific", func(t *testing.T) {
					for _, want := range rt.stderr {
						if !strings.Contains(res.Stderr, want) {
							failed = true
							t.Errorf("stderr does not say %q", want)
						}
					}
					if rt.extra == nil {
						return
					}
					for key, want := range rt.extra(s) {
						if got := res.Values[key]; !matches(got, want) {
							failed = true
							t.Errorf("%s = %q, want %q", key, got, want)
						}
					}
				})
			}
			// gethostname() is uname's node name: the layer answers uname.
			if h, ok := res.Values["info.hostname"]; ok && h != s.pod.Hostname {
				t.Errorf("gethostname() is %q, not the pod's %q", h, s.pod.Hostname)
			}
		})
	}
}

// checkListenReport checks that doppel reported both listening ports: the
// free one where it was asked for, the taken one moved elsewhere.
func checkListenReport(t *testing.T, res result, listen, taken int) bool {
	t.Helper()
	ok := true
	find := func(port int) *listenRecord {
		for i, r := range res.Listens {
			if r.Proto == "tcp" && strings.HasSuffix(r.Requested, ":"+strconv.Itoa(port)) {
				return &res.Listens[i]
			}
		}
		return nil
	}
	if r := find(listen); r == nil {
		t.Errorf("doppel did not report the listen on %d: %+v", listen, res.Listens)
		ok = false
	} else if !strings.HasSuffix(r.Actual, ":"+strconv.Itoa(listen)) {
		t.Errorf("free port %d: listening on %s instead", listen, r.Actual)
		ok = false
	}
	if r := find(taken); r == nil {
		t.Errorf("doppel did not report the listen on the taken port %d: %+v", taken, res.Listens)
		ok = false
	} else if strings.HasSuffix(r.Actual, ":"+strconv.Itoa(taken)) {
		t.Errorf("taken port %d: reported as listening on %s, which another socket holds", taken, r.Actual)
		ok = false
	}
	return ok
}
