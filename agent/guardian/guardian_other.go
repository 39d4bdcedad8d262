//go:build !linux

package guardian

import (
	"errors"
	"os/exec"
)

// ErrNotSupported: guardians need Linux.
var ErrNotSupported = errors.New("guardian: not supported on this OS")

// Process is a running guardian (never, outside Linux).
type Process struct{}

// Start fails outside Linux.
func Start(string, []string, any, func(*exec.Cmd) error) (*Process, error) {
	return nil, ErrNotSupported
}

// Stop does nothing outside Linux.
func (*Process) Stop(bool) {}

// Exited is never closed outside Linux.
func (*Process) Exited() <-chan struct{} { return nil }

// PID is 0 outside Linux.
func (*Process) PID() int { return 0 }

// MaybeRun returns at once outside Linux.
func MaybeRun(string, func([]byte, func() bool) int) {}
