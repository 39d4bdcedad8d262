package seccomp

import (
	"os"

	"golang.org/x/sys/unix"
)

// pidfdThread is PIDFD_THREAD (6.9+): a pidfd for a thread, not a process.
// (pidfds are always close-on-exec: pidfd_open takes no O_CLOEXEC.)
const pidfdThread = unix.O_EXCL

// PidfdOpen opens a pidfd for thread tid of process tgid, or for the process
// on kernels without PIDFD_THREAD. Either one serves pidfd_getfd: threads
// share their fd table.
func PidfdOpen(tid, tgid int) (int, error) {
	if tid != tgid {
		if fd, err := unix.PidfdOpen(tid, pidfdThread); err == nil {
			return fd, nil
		}
	}
	fd, err := unix.PidfdOpen(tgid, 0)
	return fd, os.NewSyscallError("pidfd_open", err)
}

// GetFD duplicates the target's fd into the caller (close-on-exec). The copy
// shares the open file description: connect, bind and send on it act on the
// target's socket.
func GetFD(pidfd, fd int) (int, error) {
	n, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, err
	}
	return n, nil
}
