//go:build linux

package freeze

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// cgroupPaths returns proc/PID/cgroup as a reader in the node init's
// cgroup namespace sees it: the paths there are relative to the reader's
// cgroup namespace, and the node's cgroup mounts (proc/1/root/...) are
// rooted where init's namespace is. When the agent shares init's cgroup
// namespace (cgroup v1 nodes, and the tests) the file is read as is;
// otherwise from a thread that joined init's namespace (CAP_SYS_ADMIN),
// which is thrown away afterwards.
func cgroupPaths(proc string, pid int) ([]byte, error) {
	file := filepath.Join(proc, strconv.Itoa(pid), "cgroup")
	self, err1 := os.Readlink(filepath.Join(proc, "self", "ns", "cgroup"))
	init, err2 := os.Readlink(filepath.Join(proc, "1", "ns", "cgroup"))
	if err1 != nil || err2 != nil || self == init {
		return readCgroup(file)
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread is never unlocked: it exits with the goroutine
		// rather than go back to the pool in another cgroup namespace.
		runtime.LockOSThread()
		fd, err := unix.Open(filepath.Join(proc, "1", "ns", "cgroup"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- result{err: fmt.Errorf("freeze: opening the node's cgroup namespace: %w", err)}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWCGROUP); err != nil {
			done <- result{err: fmt.Errorf("freeze: entering the node's cgroup namespace: %w", err)}
			return
		}
		b, err := readCgroup(file)
		done <- result{b, err}
	}()
	r := <-done
	return r.b, r.err
}

func readCgroup(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("freeze: the target's cgroups: %w", err)
	}
	return b, nil
}
