// Package layer is the supervisor of an intercepted process tree: it answers
// the syscalls the seccomp filter (package layer/seccomp) traps, asking a
// Handler — the session — what to do with each connect, listen, open and stat,
// and carries out the answer on the process's own sockets and fds.
package layer

import (
	"context"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Process identifies the caller of a trapped syscall.
type Process struct {
	PID  int // thread group id
	TID  int // the calling thread
	Exe  string
	Args []string
	// Exe and Args are read once per process (cached by PID) and again after
	// an execve.
}

// Proto is the transport of a socket.
type Proto uint8

const (
	TCP Proto = iota + 1
	UDP
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto?"
}

// Call says which syscall carried the destination.
type Call uint8

const (
	// CallConnect is connect(2), TCP or UDP.
	CallConnect Call = iota + 1
	// CallSendTo is sendto/sendmsg/sendmmsg with a destination address: an
	// unconnected UDP datagram, or a TCP Fast Open connect.
	CallSendTo
)

// ConnectRequest is an outgoing connection or datagram to an IP address.
type ConnectRequest struct {
	Process Process
	Proto   Proto
	Call    Call
	// Dst is the destination as the process gave it; v4-mapped IPv6
	// addresses are unmapped.
	Dst netip.AddrPort
	// SocketFamily is the socket's domain: unix.AF_INET or unix.AF_INET6.
	SocketFamily int
	// Local is the socket's local address when it is already bound (a UDP
	// socket that sent before), so a session can reuse the relay of an
	// unconnected socket's flow; zero otherwise.
	Local netip.AddrPort
}

// ConnectAction is what to do with a ConnectRequest.
type ConnectAction uint8

const (
	// Passthrough lets the kernel run the call unchanged.
	Passthrough ConnectAction = iota
	// Redirect connects the socket (or sends the datagram) to
	// ConnectVerdict.Redirect instead.
	Redirect
	// Fail makes the call fail with ConnectVerdict.Errno.
	Fail
)

// ConnectVerdict is the Handler's answer to a ConnectRequest.
type ConnectVerdict struct {
	Action ConnectAction
	// Redirect (for Action Redirect) is where the socket is connected, or
	// the datagram sent, instead: a loopback listener or relay of the
	// session. Give an IPv4 address: IPv6 sockets get it v4-mapped (or ::1
	// when they are IPV6_V6ONLY).
	Redirect netip.AddrPort
	// Errno (for Action Fail); zero means ECONNREFUSED.
	Errno syscall.Errno
	// Connected, if set, is called after the redirected connect or send with
	// the socket's local address (by which the session's listener or relay
	// recognises the connection), before the process resumes.
	Connected func(local netip.AddrPort)
}

// FileAction is what to do with an open or a stat.
type FileAction uint8

const (
	// FilePassthrough lets the kernel run the call on the local file system.
	FilePassthrough FileAction = iota
	// FileErrno fails the call with the verdict's Errno (ENOENT for a path
	// that does not exist in the pod).
	FileErrno
	// FileServe answers the call from the verdict.
	FileServe
)

// OpenVerdict is the Handler's answer to an open.
type OpenVerdict struct {
	Action FileAction
	Errno  syscall.Errno
	// File (for FileServe) is installed in the process as the result of the
	// open (O_CLOEXEC as requested); the layer closes its own copy. The new
	// fd shares File's offset, so give a fresh open file.
	File *os.File
}

// StatVerdict is the Handler's answer to a stat, access or readlink.
type StatVerdict struct {
	Action FileAction
	Errno  syscall.Errno
	// Stat (for FileServe) is written into the process's buffer, converted
	// for statx. access(2) succeeds for a served path unless it asks for
	// X_OK and Stat has no execute bit.
	Stat unix.Stat_t
	// Link is the target for readlink; empty means "not a symlink" (EINVAL).
	Link string
}

// Handler decides for the session. The layer calls Skip on its receive loop,
// so it must be quick and must not block; the other methods run on their own
// goroutines and may block (the trapped thread waits for the answer).
type Handler interface {
	// Skip reports whether every trapped call of the process passes
	// through: debuggers, build tools, user-listed programs. It is asked
	// once per process and again after each execve.
	Skip(p Process) bool
	Connect(ctx context.Context, r ConnectRequest) ConnectVerdict
	// Listening reports a socket that started listening: TCP listen(2), or
	// UDP bind(2). Requested is the address the process asked for (and will
	// keep seeing through getsockname), with port 0 where the kernel chose
	// the port; actual is where it listens, which differs when the
	// requested port was taken locally.
	Listening(p Process, proto Proto, requested, actual netip.AddrPort)
	// Open is asked for open/openat/openat2. Path is absolute, made so
	// against the process's cwd or dirfd and cleaned lexically.
	Open(ctx context.Context, p Process, path string, flags int) OpenVerdict
	// Stat is asked for the stat, lstat, newfstatat, statx, access,
	// faccessat(2), readlink and readlinkat calls; follow is false where
	// the call does not follow a final symlink (lstat, AT_SYMLINK_NOFOLLOW,
	// readlink).
	Stat(ctx context.Context, p Process, path string, follow bool) StatVerdict
}

// ListenPorts is an optional Handler extension: where a requested
// listening port is really bound locally (the config's listen_ports). The
// process keeps seeing the requested port through getsockname.
type ListenPorts interface {
	// LocalListenPort returns the local port for requested, or 0 to bind
	// the requested port itself (or a free one when it is taken).
	LocalListenPort(p Process, requested uint16) uint16
}

// QuickFiles is an optional Handler extension for the hot path: a decision
// about a path that needs no I/O, taken on the receive loop itself. Most
// opens of a program (its libraries, its own files) stay local; answering
// them there saves handing each one to a goroutine (measured: 77-100 µs
// per trapped openat that way, against ~24 µs answered on the loop).
// decided=false sends the call to Open or Stat as usual; only
// FilePassthrough and FileErrno can be decided quickly.
type QuickFiles interface {
	QuickFile(p Process, path string, write bool) (action FileAction, errno syscall.Errno, decided bool)
}

// QuickConnects is an optional Handler extension for the hot path: a
// connect(2) the handler can decide without waiting for anything — a
// passthrough, the session's DNS responder, an early dial of a destination
// the pod reached lately — answered on the receive loop itself, saving the
// hand-off to a goroutine. The layer asks only for non-blocking sockets
// (their redirected connect cannot block the loop). QuickConnect must not
// block; Connected callbacks of its verdicts run on the loop too.
// decided=false sends the call to Connect as usual.
type QuickConnects interface {
	QuickConnect(ctx context.Context, r ConnectRequest) (v ConnectVerdict, decided bool)
}

// HostnameProvider is an optional Handler extension: where the filter traps
// uname(2) (seccomp.Options.Hostname), the layer answers it with this
// machine's own utsname but Hostname as the node name.
type HostnameProvider interface {
	Hostname() string
}
