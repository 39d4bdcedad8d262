//go:build linux

package target

import "runtime"

// Locking the main goroutine to the main thread during init keeps every
// other goroutine, the namespace thread included, off that thread. The
// main thread must never setns: it is the thread-group leader, whose
// namespaces /proc/self/ns/* shows (and Target compares against), and Go
// cannot end it when a locked goroutine exits, so it would stay in the
// target's namespaces for the life of the process.
func init() {
	runtime.LockOSThread()
}
