//go:build !linux

package seccomp

// CheckKernel returns ErrNotSupported outside Linux.
func CheckKernel(Options) ([]string, error) { return nil, ErrNotSupported }

// Install returns ErrNotSupported outside Linux.
func Install(Program) (int, error) { return -1, ErrNotSupported }

// SetNoNewPrivs returns ErrNotSupported outside Linux.
func SetNoNewPrivs() error { return ErrNotSupported }
