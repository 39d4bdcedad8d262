// Package files reads the target container's files through a descriptor
// of its root directory (/proc/PID/root). Every path resolves with
// openat2(RESOLVE_IN_ROOT): absolute symlinks and ".." stay inside the
// container's root, as they would for the container itself, so a symlink
// in the pod never makes the agent read its own or the node's files. On a
// node without openat2 (Linux before 5.6, or a seccomp profile that
// refuses it) the same resolution is done one component at a time
// (Root.walk). Linux only.
package files
