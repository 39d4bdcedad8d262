//go:build !linux

package layer

import "github.com/doppel-dev/doppel/layer/seccomp"

// EnvSocket names the preload server's socket for libdoppel.so.
const EnvSocket = "DOPPEL_LAYER_SOCKET"

// PreloadServer exists only on Linux.
type PreloadServer struct{}

// ListenPreload returns seccomp.ErrNotSupported outside Linux.
func ListenPreload(sup *Supervisor, path string) (*PreloadServer, error) {
	return nil, seccomp.ErrNotSupported
}

// Env returns nothing.
func (p *PreloadServer) Env(shim, preload string) []string { return nil }

// Serve returns seccomp.ErrNotSupported.
func (p *PreloadServer) Serve() error { return seccomp.ErrNotSupported }

// Close does nothing.
func (p *PreloadServer) Close() error { return nil }
