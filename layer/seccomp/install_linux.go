package seccomp

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// installFlags: NEW_LISTENER with TSYNC needs TSYNC_ESRCH (TSYNC alone
// reports a failing thread id in the return value, which collides with the
// listener fd). WAIT_KILLABLE_RECV keeps a received call from being withdrawn
// and restarted by an ordinary signal, so an action is never done twice.
const installFlags = unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC |
	unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH | unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW |
	unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV

// SetNoNewPrivs sets PR_SET_NO_NEW_PRIVS, which an unprivileged process
// needs before installing a filter.
func SetNoNewPrivs() error {
	return os.NewSyscallError("prctl(PR_SET_NO_NEW_PRIVS)", unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
}

// Install installs p on every thread of the calling process and returns the
// listener fd (close-on-exec). Call it on a locked OS thread after
// SetNoNewPrivs. It returns unix.EBUSY when a filter above this one already
// has a listener: the process is then covered by it.
func Install(p Program) (int, error) {
	if runtime.GOARCH != "amd64" {
		return -1, ErrNotSupported
	}
	fprog := unix.SockFprog{Len: uint16(len(p)), Filter: (*unix.SockFilter)(unsafe.Pointer(&p[0]))}
	flags := uintptr(installFlags)
	for {
		fd, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
		runtime.KeepAlive(p)
		if e == unix.EINVAL && flags&unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV != 0 {
			// Before 5.19: work without it (CheckKernel has said what that costs).
			flags &^= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
			continue
		}
		if e != 0 {
			return -1, e
		}
		unix.CloseOnExec(int(fd))
		return int(fd), nil
	}
}

// CheckKernel reports whether the running kernel has what a filter with o
// needs; it returns ErrKernelTooOld naming the minimum otherwise. The
// warnings name recommended features that are missing.
func CheckKernel(o Options) (warnings []string, err error) {
	if runtime.GOARCH != "amd64" {
		return nil, ErrNotSupported
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, err
	}
	return checkRelease(unix.ByteSliceToString(u.Release[:]), o)
}
