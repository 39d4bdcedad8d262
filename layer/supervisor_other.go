//go:build !linux

package layer

import (
	"os"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

// Supervisor is only implemented on Linux.
type Supervisor struct{ opts Options }

// NewSupervisor returns a supervisor whose Serve fails: seccomp user
// notification exists only on Linux.
func NewSupervisor(h Handler, opts Options) *Supervisor { return &Supervisor{opts: opts} }

// Filter returns the filter options the supervisor was made for.
func (s *Supervisor) Filter() seccomp.Options { return s.opts.Filter }

// Serve returns seccomp.ErrNotSupported.
func (s *Supervisor) Serve(listener *os.File) error {
	listener.Close()
	return seccomp.ErrNotSupported
}

// Stats returns zeros.
func (s *Supervisor) Stats() Stats { return Stats{} }

// Close does nothing.
func (s *Supervisor) Close() error { return nil }
