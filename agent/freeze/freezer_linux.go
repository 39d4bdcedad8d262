//go:build linux

// Package freeze freezes and thaws the target container's processes with
// the cgroup freezer (v1 freezer.state, v2 cgroup.freeze), counts the
// sessions that asked for it, and runs a guardian process that thaws the
// container when the agent dies, however it dies.
package freeze

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Freezer is the freezer of one cgroup: a directory of a v1 freezer
// hierarchy (freezer.state) or of the v2 hierarchy (cgroup.freeze).
type Freezer struct {
	Dir string
	V2  bool
}

// FindFreezer returns the freezer of process pid's cgroup. proc is the
// agent's /proc (hostPID: every process of the node); the cgroup file
// systems are those of the node, reached under proc/1/root as mounted for
// the node's init (proc/1/mountinfo), so the agent needs no cgroup mount
// of its own. The path of pid's cgroup is read from a thread in init's
// cgroup namespace when the agent has one of its own (cgroup v2 hosts
// give containers private cgroup namespaces); see cgroupPaths.
// A v1 freezer hierarchy is preferred over v2 where both exist (hybrid
// hosts keep processes in v1 hierarchies).
func FindFreezer(proc string, pid int) (*Freezer, error) {
	cg, err := cgroupPaths(proc, pid)
	if err != nil {
		return nil, err
	}
	mounts, err := os.ReadFile(filepath.Join(proc, "1", "mountinfo"))
	if err == nil {
		f, ferr := findFreezer(filepath.Join(proc, "1", "root"), cg, mounts)
		if ferr == nil {
			return f, nil
		}
		err = ferr
	}
	// The node's init may be out of reach (another user namespace, a
	// sandbox): mount the hierarchy in the agent's own mount namespace.
	f, merr := mountFreezer(cg)
	if merr != nil {
		return nil, errors.Join(err, merr)
	}
	return f, nil
}

// mountDir is where mountFreezer mounts a cgroup hierarchy.
const mountDir = "/run/doppel-freezer"

// mountFreezer mounts the v1 freezer hierarchy (else cgroup2) at mountDir
// in the agent's mount namespace (CAP_SYS_ADMIN) and finds the cgroup
// there.
func mountFreezer(cg []byte) (*Freezer, error) {
	v1 := strings.Contains(string(cg), ":freezer:")
	fstype, data := "cgroup2", ""
	if v1 {
		fstype, data = "cgroup", "freezer"
	}
	if err := os.MkdirAll(mountDir, 0o700); err != nil {
		return nil, err
	}
	if !isMounted(mountDir) {
		if err := unix.Mount("cgroup", mountDir, fstype, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
			return nil, fmt.Errorf("freeze: mounting the %s hierarchy: %w", fstype, err)
		}
	}
	mi := fmt.Sprintf("1 1 0:1 / %s rw - %s cgroup rw,%s\n", mountDir, fstype, data)
	return findFreezer("/", cg, []byte(mi))
}

func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if m, ok := parseMount(line); ok && m.point == dir {
			return true
		}
	}
	return false
}

// findFreezer picks the freezer directory of a process whose
// /proc/PID/cgroup is cgroupFile, on a node whose init has mountinfo,
// with the node's root at root.
func findFreezer(root string, cgroupFile, mountinfo []byte) (*Freezer, error) {
	var v1, v2 string
	hasV1, hasV2 := false, false
	for _, line := range strings.Split(string(cgroupFile), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2, hasV2 = parts[2], true
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "freezer" {
				v1, hasV1 = parts[2], true
			}
		}
	}
	if !hasV1 && !hasV2 {
		return nil, errors.New("freeze: the target's cgroup file names no freezer or cgroup v2 hierarchy")
	}
	var v1Mount, v2Mount *mount
	for _, line := range strings.Split(string(mountinfo), "\n") {
		m, ok := parseMount(line)
		if !ok {
			continue
		}
		switch {
		case m.fstype == "cgroup" && m.hasOption("freezer") && v1Mount == nil:
			v1Mount = &m
		case m.fstype == "cgroup2" && v2Mount == nil:
			v2Mount = &m
		}
	}
	if hasV1 && v1Mount != nil {
		if dir, ok := v1Mount.dirOf(root, v1); ok && exists(filepath.Join(dir, "freezer.state")) {
			return &Freezer{Dir: dir}, nil
		}
	}
	if hasV2 && v2Mount != nil {
		if dir, ok := v2Mount.dirOf(root, v2); ok && exists(filepath.Join(dir, "cgroup.freeze")) {
			return &Freezer{Dir: dir, V2: true}, nil
		}
	}
	return nil, fmt.Errorf("freeze: no freezer for the target's cgroup (v1 %q, v2 %q) among the node's cgroup mounts", v1, v2)
}

type mount struct {
	root, point, fstype string
	superOpts           []string
}

// parseMount reads one line of mountinfo: "ID PARENT MAJ:MIN ROOT POINT
// OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS".
func parseMount(line string) (mount, bool) {
	f := strings.Fields(line)
	sep := -1
	for i, x := range f {
		if x == "-" && i >= 6 {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+3 {
		return mount{}, false
	}
	m := mount{root: unescape(f[3]), point: unescape(f[4]), fstype: f[sep+1]}
	if len(f) > sep+3 {
		m.superOpts = strings.Split(f[sep+3], ",")
	}
	return m, true
}

func (m *mount) hasOption(o string) bool {
	for _, x := range m.superOpts {
		if x == o {
			return true
		}
	}
	return false
}

// dirOf returns where cgroup path p (absolute in the hierarchy) is under
// this mount, seen from the node root root.
func (m *mount) dirOf(root, p string) (string, bool) {
	p = filepath.Clean("/" + p)
	rel, err := filepath.Rel(m.root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return filepath.Join(root, m.point, rel), true
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Freeze freezes the cgroup and waits until the kernel says every process
// in it is frozen (v1 FREEZING turns FROZEN; v2 cgroup.events "frozen 1").
func (f *Freezer) Freeze(ctx context.Context) error {
	if err := f.write(true); err != nil {
		return err
	}
	for {
		frozen, err := f.Frozen()
		if err != nil {
			return err
		}
		if frozen {
			return nil
		}
		if f.V2 {
			// v2 needs no nudge; v1 needs the state written again to
			// retry tasks that were busy (the kernel's own advice).
		} else if err := f.write(true); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("freeze: the target's processes did not all freeze: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Thaw lets the cgroup's processes run again. Thawing is immediate in
// both versions.
func (f *Freezer) Thaw() error { return f.write(false) }

// Frozen reports whether the cgroup is completely frozen.
func (f *Freezer) Frozen() (bool, error) {
	if f.V2 {
		b, err := os.ReadFile(filepath.Join(f.Dir, "cgroup.events"))
		if err != nil {
			return false, fmt.Errorf("freeze: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == "frozen" {
				return strings.TrimSpace(v) == "1", nil
			}
		}
		return false, nil
	}
	b, err := os.ReadFile(filepath.Join(f.Dir, "freezer.state"))
	if err != nil {
		return false, fmt.Errorf("freeze: %w", err)
	}
	return strings.TrimSpace(string(b)) == "FROZEN", nil
}

func (f *Freezer) write(freeze bool) error {
	name, val := "freezer.state", "THAWED"
	if f.V2 {
		name, val = "cgroup.freeze", "0"
		if freeze {
			val = "1"
		}
	} else if freeze {
		val = "FROZEN"
	}
	// O_TRUNC for the fake cgroupfs of the tests; the kernel ignores it.
	if err := os.WriteFile(filepath.Join(f.Dir, name), []byte(val), 0o644); err != nil {
		return fmt.Errorf("freeze: writing %s to %s: %w", val, name, err)
	}
	return nil
}
