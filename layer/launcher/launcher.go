// Package launcher starts a command under the layer's seccomp filter.
//
// Go cannot run code between fork and exec, so the helper re-executes itself
// in a hidden mode: Main, called first thing in the helper's main(), sees the
// launch spec in its environment, locks its thread, sets no_new_privs,
// installs the filter, hands the listener fd to the parent over an inherited
// SOCK_SEQPACKET socket (SCM_RIGHTS), waits for a one-byte ack (sent once the
// supervisor serves the listener) and execs the command.
//
// The parent side, Start, makes the helper a child subreaper so that it
// outlives the whole process tree: once nobody answers the listener, every
// trapped call of the tree would fail with ENOSYS. A helper killed with
// SIGKILL can't: Pdeathsig ends the command, and the tree guard (a second
// hidden mode, guard_linux.go) the processes it started.
package launcher

import (
	"os"
	"time"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

// Spec is what the hidden launcher installs.
type Spec struct {
	Filter seccomp.Options
}

// Command is the program to run, as with os/exec.
type Command struct {
	// Path is the program; without a slash it is looked up in the PATH of
	// Env.
	Path string
	Args []string // Args[0] is the program's name as it sees it
	Env  []string // nil means the helper's environment
	Dir  string
	// Stdin, Stdout and Stderr are inherited by the command; nil means
	// /dev/null.
	Stdin, Stdout, Stderr *os.File
	// ForwardSignals relays SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to the
	// helper to the command, and keeps them from ending the helper. (SIGINT
	// and SIGQUIT typed at a terminal already reach the command, which
	// shares the helper's foreground process group: those are not sent
	// twice.)
	ForwardSignals bool
	// KillGrace is how long processes left in the tree after the command
	// exits get between SIGTERM and SIGKILL; zero means 2s.
	KillGrace time.Duration
}

// envSpec carries the launch spec to the hidden launcher. It is removed from
// the environment the command sees.
const envSpec = "DOPPEL_LAYER_LAUNCH"

// launchSpec is what the parent passes to the hidden launcher.
type launchSpec struct {
	Filter seccomp.Options `json:"filter"`
	Path   string          `json:"path"`
	Args   []string        `json:"args"`
}

// handoffFd is the launcher's end of the socket pair.
const handoffFd = 3

// ExitCode maps a wait status to a shell-style exit code: the exit status,
// or 128 + the signal that killed the process.
func ExitCode(exited bool, status, signal int) int {
	if exited {
		return status
	}
	return 128 + signal
}
