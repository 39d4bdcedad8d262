// Package target gives the agent its view of the target container: a
// process, by PID, whose network and UTS namespaces, root directory and
// environment the agent works in on behalf of helpers.
//
// Sockets belong to the network namespace of the thread that creates them,
// so Target keeps one OS thread that has entered the target's namespaces
// and creates every socket there; connecting, reading and writing then
// happen on any goroutine. Linux only: elsewhere Open returns
// ErrNotSupported.
package target

import "errors"

// ErrNotSupported is returned on systems without Linux namespaces.
var ErrNotSupported = errors.New("target: not supported on this system")
