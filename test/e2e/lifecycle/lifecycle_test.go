//go:build e2e

// Package lifecycle tests the local cluster harness itself (hack/cluster):
// its network safety, idempotence, repair, and a teardown that leaves
// nothing behind. It runs last in `make test`: it takes the cluster down and
// brings it back.
package lifecycle

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// settings reads the harness's names (bridges, ranges, paths) from lib.sh,
// so the test checks exactly what the scripts create.
func settings(t *testing.T) map[string]string {
	t.Helper()
	names := []string{"STATE_DIR", "RUN_DIR", "NODE_BRIDGE", "POD_BRIDGE", "NODE_IP", "POD_CIDR", "SERVICE_CIDR",
		"ROUTE_TABLE", "RULE_PRIORITY", "GUARD_CHAIN", "CNI_NETWORK", "CGROUP_ROOT", "CONTAINERD_SOCK", "CACHE_DIR"}
	script := ". hack/cluster/lib.sh"
	for _, n := range names {
		script += fmt.Sprintf("; echo %s=$%s", n, n)
	}
	out := run(t, "bash", "-c", script)
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		m[k] = v
	}
	return m
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = framework.RepoRoot()
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

func componentPIDs(t *testing.T, s map[string]string) map[string]string {
	t.Helper()
	pids := map[string]string{}
	for _, c := range []string{"containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		b, err := os.ReadFile(filepath.Join(s["RUN_DIR"], c+".pid"))
		if err != nil {
			t.Fatalf("%s has no pid file: %v", c, err)
		}
		pid, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		if _, err := os.Stat("/proc/" + pid); err != nil {
			t.Fatalf("%s (pid %s) is not running", c, pid)
		}
		pids[c] = pid
	}
	return pids
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "lifecycle: the local cluster harness needs root")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestNetworkSafety asks the kernel where packets would go, without sending
// any: pod traffic can only reach pods, and an untranslated Service address
// ends in the portless node bridge, never on the default route.
func TestNetworkSafety(t *testing.T) {
	s := settings(t)
	podIP := strings.TrimSuffix(s["POD_CIDR"], "0/24") + "250"
	for _, dst := range []string{"198.51.100.7", "10.1.2.3", "192.168.77.1"} {
		out, err := runErr("ip", "route", "get", dst, "from", podIP, "iif", s["POD_BRIDGE"])
		if err == nil && !strings.Contains(out, "unreachable") {
			t.Errorf("a pod packet to %s would be routed: %s", dst, out)
		}
	}
	svcIP := strings.TrimSuffix(s["SERVICE_CIDR"], "0.0/16") + "250.250"
	if out := run(t, "ip", "route", "get", svcIP); !strings.Contains(out, "dev "+s["NODE_BRIDGE"]) {
		t.Errorf("an untranslated Service address would leave through: %s", out)
	}
	if out := run(t, "ip", "link", "show", "master", s["NODE_BRIDGE"]); strings.TrimSpace(out) != "" {
		t.Errorf("the node bridge has ports: %s", out)
	}
	guard := run(t, "iptables", "-w", "-S", s["GUARD_CHAIN"])
	if !strings.Contains(guard, "-i "+s["POD_BRIDGE"]+" ! -o "+s["POD_BRIDGE"]+" -j DROP") {
		t.Errorf("forward guard missing:\n%s", guard)
	}
	// NodePorts answer only on the node's own address.
	nat := run(t, "iptables-save", "-t", "nat")
	for _, line := range strings.Split(nat, "\n") {
		if strings.Contains(line, "-j KUBE-NODEPORTS") && !strings.Contains(line, "-d "+s["NODE_IP"]+"/32") {
			t.Errorf("NodePorts open beyond the node address: %s", line)
		}
	}
}

func TestLifecycle(t *testing.T) {
	s := settings(t)

	t.Run("up again changes nothing and is quick", func(t *testing.T) {
		before := componentPIDs(t, s)
		start := time.Now()
		run(t, "hack/cluster/up.sh")
		took := time.Since(start)
		t.Logf("make cluster on a running cluster: %s", took.Round(time.Millisecond))
		if took > 30*time.Second {
			t.Errorf("took %s, want under 30s", took)
		}
		if after := componentPIDs(t, s); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("components were restarted: before %v, after %v", before, after)
		}
	})

	t.Run("a killed control-plane process is repaired", func(t *testing.T) {
		for _, victim := range []string{"kube-scheduler", "kube-apiserver"} {
			before := componentPIDs(t, s)
			var pid int
			fmt.Sscan(before[victim], &pid)
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 50; i++ {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			run(t, "hack/cluster/up.sh")
			after := componentPIDs(t, s)
			if after[victim] == before[victim] {
				t.Errorf("%s was not restarted", victim)
			}
			for c, p := range before {
				if c != victim && after[c] != p {
					t.Errorf("%s was restarted too", c)
				}
			}
		}
	})

	t.Run("down leaves nothing behind", func(t *testing.T) {
		saved, _ := os.ReadFile(filepath.Join(s["STATE_DIR"], "sysctl.saved"))
		containers := strings.Fields(run(t, "ctr", "--address", s["CONTAINERD_SOCK"], "-n", "k8s.io", "containers", "ls", "-q"))
		if len(containers) == 0 {
			t.Fatal("no containers before teardown: nothing to check it removes")
		}
		// What a shim killed with an earlier cluster leaves: a socket nothing
		// listens on, for a container containerd no longer lists.
		stale := filepath.Join("/run/containerd/s", fmt.Sprintf("%064x", time.Now().UnixNano()))
		if l, err := net.Listen("unix", stale); err != nil {
			t.Fatal(err)
		} else {
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			l.Close()
		}
		start := time.Now()
		run(t, "hack/cluster/down.sh")
		t.Logf("make cluster-down: %s", time.Since(start).Round(time.Millisecond))
		checkNothingLeft(t, s, string(saved))
		for _, id := range containers {
			if _, err := os.Stat("/var/lib/cni/results/cni-loopback-" + id + "-lo"); err == nil {
				t.Errorf("CNI loopback result of container %s left", id)
			}
		}
	})

	t.Run("up after down", func(t *testing.T) {
		start := time.Now()
		run(t, "hack/cluster/up.sh")
		t.Logf("make cluster from nothing (binaries cached): %s", time.Since(start).Round(time.Millisecond))
		componentPIDs(t, s)
	})
}

func checkNothingLeft(t *testing.T, s map[string]string, savedSysctls string) {
	t.Helper()
	for _, dev := range []string{s["NODE_BRIDGE"], s["POD_BRIDGE"]} {
		if _, err := runErr("ip", "link", "show", dev); err == nil {
			t.Errorf("bridge %s is still there", dev)
		}
	}
	if out := run(t, "ip", "-o", "link", "show", "type", "veth"); strings.Contains(out, ": veth") {
		t.Errorf("veth interfaces left: %s", out)
	}
	routes := run(t, "ip", "route", "show", "table", "all")
	for _, r := range []string{s["SERVICE_CIDR"], s["POD_CIDR"], "table " + s["ROUTE_TABLE"], s["NODE_IP"]} {
		if strings.Contains(routes, r) {
			t.Errorf("route with %q left:\n%s", r, routes)
		}
	}
	if rules := run(t, "ip", "rule", "show"); strings.Contains(rules, "lookup "+s["ROUTE_TABLE"]) {
		t.Errorf("policy rule left:\n%s", rules)
	}
	chains := regexp.MustCompile(`(?m)^:(KUBE-\S+|CNI-\S+|` + s["GUARD_CHAIN"] + `) `)
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle"} {
			dump := run(t, ipt+"-save", "-t", table)
			if m := chains.FindAllString(dump, -1); len(m) > 0 {
				t.Errorf("%s %s chains left: %v", ipt, table, m)
			}
			if strings.Contains(dump, s["CNI_NETWORK"]) {
				t.Errorf("%s %s rules of the CNI network left", ipt, table)
			}
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (strings.HasPrefix(f[1], s["STATE_DIR"]) || strings.HasPrefix(f[1], s["RUN_DIR"])) {
			t.Errorf("mount left: %s", line)
		}
	}
	for _, dir := range []string{s["STATE_DIR"], s["RUN_DIR"]} {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("directory %s left", dir)
		}
	}
	// Shim sockets live at a place containerd 1.6 hard-codes: none may be
	// left that nothing listens on.
	sockets, _ := filepath.Glob("/run/containerd/s/*")
	for _, sock := range sockets {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
		} else {
			t.Errorf("stale shim socket left: %s (%v)", sock, err)
		}
	}
	if results, _ := filepath.Glob("/var/lib/cni/results/" + s["CNI_NETWORK"] + "-*"); len(results) > 0 {
		t.Errorf("CNI result cache entries left: %v", results)
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*" + s["CGROUP_ROOT"])
	if len(cgroups) > 0 {
		t.Errorf("cgroups left: %v", cgroups)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, s["CONTAINERD_SOCK"]) || strings.Contains(cmd, s["CACHE_DIR"]+"/k8s-") ||
			strings.Contains(cmd, s["STATE_DIR"]) {
			t.Errorf("process left: %s %s", p, cmd)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(savedSysctls), "\n") {
		key, want, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		got, _ := os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
		if strings.TrimSpace(string(got)) != want {
			t.Errorf("sysctl %s = %s, want it restored to %s", key, strings.TrimSpace(string(got)), want)
		}
	}
}
