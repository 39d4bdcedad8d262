//go:build !linux

package layer

import (
	"os"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

// RunRequest is what `doppel wrap` asks the session to run.
type RunRequest struct {
	Path string
	Args []string
	Env  []string
	Dir  string
}

// Wrap returns seccomp.ErrNotSupported outside Linux.
func Wrap(socket string, req RunRequest, sigs <-chan os.Signal, started func(pid int)) (int, error) {
	return 0, seccomp.ErrNotSupported
}
