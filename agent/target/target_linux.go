//go:build linux

package target

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/agent/files"
)

// Target is a process whose pod the agent acts in.
type Target struct {
	pid    int
	root   int // O_PATH fd of /proc/PID/root: the container's root directory
	ns     *nsThread
	exited chan struct{}
	pidfd  *os.File
	pool   *socketPool
}

// Open attaches to process pid: it enters its network namespace on a
// dedicated thread (and its UTS namespace, for the hostname, when allowed)
// and opens its root directory. Entering a namespace needs CAP_SYS_ADMIN;
// a target in the agent's own namespaces needs nothing.
func Open(pid int) (*Target, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("target: invalid pid %d", pid)
	}
	proc := "/proc/" + strconv.Itoa(pid)
	pidfd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("target: no process %d", pid)
		}
		return nil, fmt.Errorf("target: pidfd_open %d: %w", pid, err)
	}
	t := &Target{pid: pid, root: -1, exited: make(chan struct{}),
		pidfd: os.NewFile(uintptr(pidfd), "pidfd")}
	t.root, err = unix.Open(proc+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("target: opening %s/root: %w", proc, err)
	}
	t.ns, err = startNSThread(proc)
	if err != nil {
		t.Close()
		return nil, err
	}
	t.pool = newSocketPool(t.makeSockets)
	t.pool.take(unix.AF_INET) // fills it
	// The pid may have been reused between pidfd_open and the opens by
	// path; a live pidfd afterwards proves the paths were this process's.
	if t.hasExited() {
		t.Close()
		return nil, fmt.Errorf("target: process %d exited", pid)
	}
	go t.watchExit()
	return t, nil
}

// PID returns the target's process id.
func (t *Target) PID() int { return t.pid }

// RootFD returns an O_PATH descriptor of the target's root directory,
// owned by the Target.
func (t *Target) RootFD() int { return t.root }

// Exited is closed when the target process has exited.
func (t *Target) Exited() <-chan struct{} { return t.exited }

// Close releases the namespace thread and descriptors.
func (t *Target) Close() error {
	if t.pool != nil {
		t.pool.close()
	}
	if t.ns != nil {
		t.ns.stop()
	}
	if t.root >= 0 {
		unix.Close(t.root)
		t.root = -1
	}
	return t.pidfd.Close()
}

// Socket creates a socket in the target's network namespace. It is
// non-blocking and close-on-exec whatever typ says. TCP sockets come from
// a pool made ahead (socketPool).
func (t *Target) Socket(domain, typ, proto int) (int, error) {
	if pooled(domain, typ, proto) {
		if fd := t.pool.take(domain); fd >= 0 {
			return fd, nil
		}
	}
	fd := -1
	err := t.ns.do(func() error {
		var err error
		fd, err = unix.Socket(domain, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
		return err
	})
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	return fd, nil
}

// makeSockets makes n TCP sockets of the family on the namespace thread.
func (t *Target) makeSockets(domain, n int) ([]int, error) {
	var fds []int
	err := t.ns.do(func() error {
		for range n {
			fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
		}
		return nil
	})
	return fds, err
}

// InNetns runs f on the thread that is in the target's network namespace,
// for what Socket does not cover (netlink, interface lookups). f must not
// block for long: every socket creation waits behind it.
func (t *Target) InNetns(f func() error) error { return t.ns.do(f) }

// Env returns the target's environment as the kernel recorded it at exec,
// in order: what the container runtime gave the container.
func (t *Target) Env() ([]string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(t.pid) + "/environ")
	if err != nil {
		return nil, fmt.Errorf("target: reading environ: %w", err)
	}
	if t.hasExited() {
		return nil, fmt.Errorf("target: process %d exited", t.pid)
	}
	env := []string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if len(kv) > 0 {
			env = append(env, string(kv))
		}
	}
	return env, nil
}

// Hostname returns the target's hostname: its UTS namespace's nodename,
// or the root's /etc/hostname when the agent could not enter that
// namespace.
func (t *Target) Hostname() (string, error) {
	if t.ns.uts {
		var name string
		err := t.ns.do(func() error {
			var u unix.Utsname
			if err := unix.Uname(&u); err != nil {
				return err
			}
			name = unix.ByteSliceToString(u.Nodename[:])
			return nil
		})
		return name, err
	}
	// In the root as every file of the target is (files.Root: openat2,
	// or its own walk on kernels without it).
	data, err := files.NewRoot(t.root).ReadFile("/etc/hostname", 256)
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(data)), nil
}

// hasExited polls the pidfd: readable means the process exited. (The fd
// is reached through Control because File.Fd would make it blocking and
// unregister it from the poller watchExit relies on.)
func (t *Target) hasExited() bool {
	rc, err := t.pidfd.SyscallConn()
	if err != nil {
		return true
	}
	exited := false
	rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		exited = err == nil && n > 0
	})
	return exited
}

// watchExit closes Exited when the pidfd turns readable, using the
// runtime's poller rather than a thread blocked in poll(2).
func (t *Target) watchExit() {
	rc, err := t.pidfd.SyscallConn()
	if err != nil {
		return
	}
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err != nil || n > 0
	})
	if err == nil {
		close(t.exited)
	}
}

// nsThread is a goroutine locked to an OS thread that has entered the
// target's namespaces; functions sent to it run there.
type nsThread struct {
	calls chan func()
	quit  chan struct{} // closed by stop
	uts   bool          // the thread is in the target's UTS namespace
}

// errStopped is a call on the namespace thread after the target closed.
var errStopped = errors.New("target: closed")

func startNSThread(proc string) (*nsThread, error) {
	t := &nsThread{calls: make(chan func()), quit: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		// Never unlocked: when this goroutine returns, Go ends the thread
		// instead of reusing it inside the target's namespaces.
		runtime.LockOSThread()
		if err := enterNS(proc, "net", unix.CLONE_NEWNET); err != nil {
			ready <- err
			return
		}
		// The hostname is the only use of the UTS namespace and has a
		// fallback (/etc/hostname), so failing to enter it is no error.
		t.uts = enterNS(proc, "uts", unix.CLONE_NEWUTS) == nil
		ready <- nil
		for {
			select {
			case f := <-t.calls:
				f()
			case <-t.quit:
				return
			}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return t, nil
}

// enterNS moves the calling thread into the target's namespace of the
// given kind, unless it is in it already (which needs no privilege).
func enterNS(proc, kind string, nstype int) error {
	var self, target unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/"+kind, &self); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if err := unix.Stat(proc+"/ns/"+kind, &target); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if self.Dev == target.Dev && self.Ino == target.Ino {
		return nil
	}
	fd, err := unix.Open(proc+"/ns/"+kind, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("target: opening %s/ns/%s: %w", proc, kind, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, nstype); err != nil {
		return fmt.Errorf("target: entering the %s namespace of %s: %w", kind, proc, err)
	}
	return nil
}

// do runs f on the namespace thread and returns its error; after stop it
// returns errStopped (a pool refill may race the target's close).
func (t *nsThread) do(f func() error) error {
	done := make(chan error, 1)
	select {
	case t.calls <- func() { done <- f() }:
	case <-t.quit:
		return errStopped
	}
	return <-done
}

func (t *nsThread) stop() { close(t.quit) }
