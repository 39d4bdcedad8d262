//go:build linux

package target

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeProc writes a /proc-like tree: pid -> (cgroup text, start time).
func fakeProc(t *testing.T, procs map[int][2]string) string {
	t.Helper()
	dir := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(dir, fmt.Sprint(pid))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := fmt.Sprintf("%d (a (weird) name) S 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %s 0 0", pid, p[1])
		os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644)
		os.WriteFile(filepath.Join(d, "cgroup"), []byte(p[0]), 0o644)
	}
	os.Mkdir(filepath.Join(dir, "self"), 0o755)
	return dir
}

func TestFindContainer(t *testing.T) {
	id := strings.Repeat("ab12", 16)
	other := strings.Repeat("cd34", 16)
	cgroupfs := "4:memory:/kubepods/burstable/pod389e/" + id + "\n0::/kubepods/burstable/pod389e/" + id + "\n"
	systemd := "0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-" + id + ".scope\n"
	proc := fakeProc(t, map[int][2]string{
		1:   {"0::/init.scope\n", "1"},
		50:  {"0::/kubepods/pod1/" + other + "\n", "100"},
		300: {cgroupfs, "900"}, // a kubectl exec, started later
		120: {cgroupfs, "500"}, // the container's init
		121: {cgroupfs, "501"},
	})
	for _, in := range []string{id, "containerd://" + id, "cri-o://" + id, "docker://" + id} {
		if pid, err := FindContainer(proc, in); err != nil || pid != 120 {
			t.Errorf("FindContainer(%q) = %d, %v; want 120", in, pid, err)
		}
	}
	proc2 := fakeProc(t, map[int][2]string{7: {systemd, "5"}, 8: {systemd, "5"}})
	if pid, err := FindContainer(proc2, "containerd://"+id); err != nil || pid != 7 {
		t.Errorf("systemd cgroups: %d, %v; want 7", pid, err)
	}
	if _, err := FindContainer(proc, "containerd://"+strings.Repeat("ef", 32)); err == nil || !strings.Contains(err.Error(), "hostPID") {
		t.Errorf("missing container: %v", err)
	}
	if _, err := FindContainer(proc, "containerd://../etc"); err == nil {
		t.Error("an invalid id was accepted")
	}
}

// The test's own process is found by the ID in its own cgroup path.
func TestFindContainerSelf(t *testing.T) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		base := filepath.Base(line)
		if containerID.MatchString(base) && len(base) == 64 {
			pid, err := FindContainer("/proc", base)
			if err != nil || pid <= 0 {
				t.Fatalf("FindContainer(own cgroup %s) = %d, %v", base, pid, err)
			}
			return
		}
	}
	t.Skip("not running in a container")
}
