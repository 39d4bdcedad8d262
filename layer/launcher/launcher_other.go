//go:build !linux

package launcher

import (
	"context"
	"os"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

// Main returns at once outside Linux.
func Main() {}

// Tree is a launched command; outside Linux none can be started.
type Tree struct{ Pid int }

// Start returns seccomp.ErrNotSupported outside Linux.
func Start(ctx context.Context, spec Spec, cmd Command, serve func(listener *os.File) error) (*Tree, error) {
	return nil, seccomp.ErrNotSupported
}

// Signal does nothing.
func (t *Tree) Signal(os.Signal) error { return seccomp.ErrNotSupported }

// Wait returns 0.
func (t *Tree) Wait() int { return 0 }

// Kill returns 0.
func (t *Tree) Kill() int { return 0 }

// Foreign does nothing outside Linux.
func Foreign(pid int) {}
