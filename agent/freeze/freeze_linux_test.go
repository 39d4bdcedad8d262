//go:build linux

package freeze

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// The guardian test re-executes this test binary as the guardian.
	MaybeRunGuardian()
	os.Exit(m.Run())
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

const ctr = "/kubepods/besteffort/pod1234/abcdef0123"

// A hybrid node as this project's CI runs on: v1 hierarchies with v2
// mounted at /sys/fs/cgroup/unified.
const hybridMounts = `25 1 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
28 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,freezer
`

const hybridCgroup = `12:freezer:` + ctr + `
4:cpu,cpuacct:` + ctr + `
0::/
`

func TestFindFreezerV1OnAHybridNode(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "sys/fs/cgroup/freezer", ctr, "freezer.state"), "THAWED\n")
	f, err := findFreezer(root, []byte(hybridCgroup), []byte(hybridMounts))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "sys/fs/cgroup/freezer", ctr); f.Dir != want || f.V2 {
		t.Errorf("freezer %+v, want v1 at %s", f, want)
	}
}

func TestFindFreezerV2(t *testing.T) {
	root := t.TempDir()
	mounts := "26 1 0:24 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	write(t, filepath.Join(root, "sys/fs/cgroup", ctr, "cgroup.freeze"), "0\n")
	f, err := findFreezer(root, []byte("0::"+ctr+"\n"), []byte(mounts))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "sys/fs/cgroup", ctr); f.Dir != want || !f.V2 {
		t.Errorf("freezer %+v, want v2 at %s", f, want)
	}
	// A mount of a subtree (a cgroup namespace's view) maps paths under it.
	sub := "26 1 0:24 /kubepods /mnt/cg rw - cgroup2 cgroup2 rw\n"
	write(t, filepath.Join(root, "mnt/cg/besteffort/pod1234/abcdef0123/cgroup.freeze"), "0\n")
	if f, err = findFreezer(root, []byte("0::"+ctr+"\n"), []byte(sub)); err != nil || !strings.HasSuffix(f.Dir, "mnt/cg/besteffort/pod1234/abcdef0123") {
		t.Errorf("subtree mount: %+v, %v", f, err)
	}
	// Outside the mounted subtree: no freezer.
	if _, err := findFreezer(root, []byte("0::/other\n"), []byte(sub)); err == nil {
		t.Error("a cgroup outside every mount got a freezer")
	}
}

func TestFindFreezerNone(t *testing.T) {
	if _, err := findFreezer(t.TempDir(), []byte("3:cpu:/x\n"), []byte(hybridMounts)); err == nil {
		t.Error("no freezer hierarchy, yet a freezer")
	}
}

func TestParseMountEscapes(t *testing.T) {
	m, ok := parseMount(`40 25 0:30 / /sys/fs/cgroup/with\040space rw shared:1 - cgroup cgroup rw,freezer`)
	if !ok || m.point != "/sys/fs/cgroup/with space" || !m.hasOption("freezer") {
		t.Errorf("parsed %+v %v", m, ok)
	}
}

// fakeV2 plays the kernel for a v2 cgroup: it reflects cgroup.freeze in
// cgroup.events after a short delay, as the kernel does once every task
// stopped.
func fakeV2(t *testing.T, dir string) {
	write(t, filepath.Join(dir, "cgroup.freeze"), "0\n")
	write(t, filepath.Join(dir, "cgroup.events"), "populated 1\nfrozen 0\n")
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			b, _ := os.ReadFile(filepath.Join(dir, "cgroup.freeze"))
			v := strings.TrimSpace(string(b))
			if v == "0" || v == "1" {
				// Replaced at once, as the kernel's file is: a reader
				// must never see it truncated.
				tmp := filepath.Join(dir, ".cgroup.events")
				os.WriteFile(tmp, []byte("populated 1\nfrozen "+v+"\n"), 0o644)
				os.Rename(tmp, filepath.Join(dir, "cgroup.events"))
			}
		}
	}()
}

func TestFreezerV2(t *testing.T) {
	dir := t.TempDir()
	fakeV2(t, dir)
	f := &Freezer{Dir: dir, V2: true}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "cgroup.freeze")); got != "1" {
		t.Errorf("cgroup.freeze %q after Freeze", got)
	}
	if frozen, _ := f.Frozen(); !frozen {
		t.Error("not frozen after Freeze")
	}
	if err := f.Thaw(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "cgroup.freeze")); got != "0" {
		t.Errorf("cgroup.freeze %q after Thaw", got)
	}
}

func TestFreezerV1(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "freezer.state"), "THAWED\n")
	f := &Freezer{Dir: dir}
	if err := f.Freeze(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "freezer.state")); got != "FROZEN" {
		t.Errorf("freezer.state %q after Freeze", got)
	}
	if err := f.Thaw(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "freezer.state")); got != "THAWED" {
		t.Errorf("freezer.state %q after Thaw", got)
	}
}

func TestFreezerV2Timeout(t *testing.T) {
	dir := t.TempDir()
	// Nobody plays the kernel: the cgroup never says frozen.
	write(t, filepath.Join(dir, "cgroup.freeze"), "0\n")
	write(t, filepath.Join(dir, "cgroup.events"), "populated 1\nfrozen 0\n")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := (&Freezer{Dir: dir, V2: true}).Freeze(ctx); err == nil {
		t.Error("Freeze returned without the cgroup frozen")
	}
}

func TestManagerCountsHolders(t *testing.T) {
	dir := t.TempDir()
	fakeV2(t, dir)
	m := newManager(func() (*Freezer, error) { return &Freezer{Dir: dir, V2: true}, nil }, nil)
	ctx := context.Background()
	state := func() string { return read(t, filepath.Join(dir, "cgroup.freeze")) }
	if st, err := m.Hold(ctx, "a"); err != nil || !st.Frozen || st.Holders != 1 || state() != "1" {
		t.Fatalf("first hold: %+v %v, cgroup.freeze %s", st, err, state())
	}
	if st, _ := m.Hold(ctx, "b"); st.Holders != 2 {
		t.Errorf("second hold: %+v", st)
	}
	if st, _ := m.Hold(ctx, "a"); st.Holders != 2 {
		t.Errorf("a again: %+v", st)
	}
	if st, _ := m.Release("a"); !st.Frozen || state() != "1" {
		t.Errorf("after the first release: %+v, cgroup.freeze %s", st, state())
	}
	if st, _ := m.Release("nobody"); !st.Frozen {
		t.Errorf("an unknown session thawed: %+v", st)
	}
	if st, _ := m.Release("b"); st.Frozen || state() != "0" {
		t.Errorf("after the last release: %+v, cgroup.freeze %s", st, state())
	}
	// Close of a frozen target thaws it.
	m.Hold(ctx, "c")
	if err := m.Close(); err != nil || state() != "0" {
		t.Errorf("Close: %v, cgroup.freeze %s", err, state())
	}
}

// A last holder's thaw that fails leaves the target frozen, and says so;
// Close thaws it then.
func TestManagerThawFailureIsNotForgotten(t *testing.T) {
	dir := t.TempDir()
	fakeV2(t, dir)
	m := newManager(func() (*Freezer, error) { return &Freezer{Dir: dir, V2: true}, nil }, nil)
	knob := filepath.Join(dir, "cgroup.freeze")
	if _, err := m.Hold(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	// A directory where the file was: the write of the thaw fails.
	os.Remove(knob)
	if err := os.Mkdir(knob, 0o755); err != nil {
		t.Fatal(err)
	}
	if st, err := m.Release("a"); err == nil || !st.Frozen {
		t.Errorf("release with a failing thaw: %+v %v, want an error and still frozen", st, err)
	}
	os.Remove(knob)
	write(t, knob, "1\n")
	if err := m.Close(); err != nil || read(t, knob) != "0" {
		t.Errorf("Close after the failed thaw: %v, cgroup.freeze %s", err, read(t, knob))
	}
}

// The guardian thaws when the agent's pipe closes without a goodbye (as
// when the agent dies), and goes quietly after a goodbye.
func TestGuardian(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "freezer.state"), "THAWED\n")
	f := &Freezer{Dir: dir}
	m := newManager(func() (*Freezer, error) { return f, nil }, nil)
	m.Guardian = true
	if _, err := m.Hold(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if m.GuardianPID() == 0 {
		t.Fatal("no guardian")
	}
	// The agent "dies": its end of the pipe closes without a goodbye.
	m.guard.Stop(false) // waits for the guardian's exit
	if got := read(t, filepath.Join(dir, "freezer.state")); got != "THAWED" {
		t.Errorf("freezer.state %q after the agent's death", got)
	}

	// A clean release says goodbye: the guardian leaves the state alone.
	m2 := newManager(func() (*Freezer, error) { return f, nil }, nil)
	m2.Guardian = true
	m2.Hold(context.Background(), "a")
	g2 := m2.guard
	m2.Release("a")
	select {
	case <-g2.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("the guardian did not exit after the thaw")
	}
	if m2.GuardianPID() != 0 {
		t.Error("the guardian stays after the thaw")
	}
}
