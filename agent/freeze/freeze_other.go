//go:build !linux

// Package freeze freezes and thaws the target container's processes with
// the cgroup freezer; Linux only.
package freeze

// MaybeRunGuardian does nothing outside Linux.
func MaybeRunGuardian() {}
