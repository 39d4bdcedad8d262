package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

// handoff is the sendmsg that passes the listener to the parent. It lives at
// a fixed address so the filter can let exactly this call through when
// sendmsg is trapped: nobody could answer it yet.
var handoff struct {
	msg  unix.Msghdr
	iov  unix.Iovec
	data [1]byte
	oob  [24]byte // CMSG_SPACE(sizeof(int))
}

// Main runs the hidden launcher (or the tree guard) and never returns if the
// process was started as one by Start; otherwise it returns at once. Call it first in main()
// (and in TestMain of tests that use Start).
func Main() {
	if os.Getenv(envGuard) != "" {
		runGuard()
	}
	raw, ok := os.LookupEnv(envSpec)
	if !ok {
		return
	}
	runtime.LockOSThread()
	var spec launchSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		abort(fmt.Errorf("launch spec: %w", err))
	}
	env := commandEnv(os.Environ())
	path := spec.Path
	if !strings.Contains(path, "/") {
		// exec.LookPath reads this process's PATH: the command's own.
		p, err := exec.LookPath(path)
		if err != nil {
			abort(err)
		}
		path = p
	}
	listener, err := install(spec.Filter)
	if err != nil {
		abort(err)
	}
	if err := sendListener(listener); err != nil {
		os.Exit(126) // after install: the parent sees the socket close
	}
	unix.Close(listener)
	var ack [1]byte
	if n, _ := unix.Read(handoffFd, ack[:]); n != 1 {
		os.Exit(126)
	}
	unix.Close(handoffFd)
	err = syscall.Exec(path, spec.Args, env)
	fmt.Fprintf(os.Stderr, "doppel: exec %s: %v\n", path, err)
	if errors.Is(err, unix.ENOENT) {
		os.Exit(127)
	}
	os.Exit(126)
}

func install(o seccomp.Options) (int, error) {
	if err := seccomp.SetNoNewPrivs(); err != nil {
		return -1, err
	}
	if o.UDP {
		o.Exempt = &seccomp.SendmsgExemption{FD: handoffFd, Msg: uint64(uintptr(unsafe.Pointer(&handoff.msg)))}
	}
	prog, err := seccomp.Build(o)
	if err != nil {
		return -1, err
	}
	fd, err := seccomp.Install(prog)
	if err != nil {
		return -1, fmt.Errorf("install seccomp filter: %w", err)
	}
	return fd, nil
}

func sendListener(fd int) error {
	h := &handoff
	h.data[0] = 'L'
	h.iov.Base = &h.data[0]
	h.iov.SetLen(1)
	h.msg.Iov = &h.iov
	h.msg.Iovlen = 1
	rights := unix.UnixRights(fd)
	copy(h.oob[:], rights)
	h.msg.Control = &h.oob[0]
	h.msg.SetControllen(len(rights))
	for {
		_, _, e := unix.RawSyscall(unix.SYS_SENDMSG, handoffFd, uintptr(unsafe.Pointer(&h.msg)), 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// abort reports a failure before the filter is installed to the parent,
// which returns it from Start.
func abort(err error) {
	unix.Write(handoffFd, []byte("E"+err.Error()))
	os.Exit(126)
}

func withoutSpec(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, envSpec+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// envSavedPreload holds the command's LD_PRELOAD while the launcher runs:
// a preloaded libdoppel.so would put the launcher itself under a filter,
// and its own would then be refused (EBUSY).
const envSavedPreload = "DOPPEL_LAYER_SAVED_LD_PRELOAD"

// launcherEnv is the command's environment as the launcher gets it.
func launcherEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range withoutSpec(env) {
		if v, ok := strings.CutPrefix(kv, "LD_PRELOAD="); ok {
			kv = envSavedPreload + "=" + v
		} else if strings.HasPrefix(kv, envSavedPreload+"=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// commandEnv undoes launcherEnv.
func commandEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range withoutSpec(env) {
		if v, ok := strings.CutPrefix(kv, envSavedPreload+"="); ok {
			kv = "LD_PRELOAD=" + v
		} else if strings.HasPrefix(kv, "LD_PRELOAD=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
