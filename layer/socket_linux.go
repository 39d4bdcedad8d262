package layer

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socket is the supervisor's duplicate of a process's socket (pidfd_getfd):
// the same open file description, so what the supervisor does to it — connect,
// bind, listen, send — the process's socket does.
type socket struct {
	fd     int
	family int
	typ    int // SOCK_STREAM, SOCK_DGRAM, ...
}

// openSocket duplicates fd of the caller. ok is false when fd is not an
// AF_INET/AF_INET6 stream or datagram socket, or no longer exists: the call
// then continues and the kernel gives the process its own answer.
func (c *call) openSocket(fd uint64) (s socket, ok bool) {
	n, err := c.proc.getFD(int(int32(fd)))
	if err != nil {
		return s, false
	}
	s.fd = n
	if s.family, err = unix.GetsockoptInt(n, unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil {
		s.typ, err = unix.GetsockoptInt(n, unix.SOL_SOCKET, unix.SO_TYPE)
	}
	if err != nil || (s.family != afInet && s.family != afInet6) || (s.typ != unix.SOCK_STREAM && s.typ != unix.SOCK_DGRAM) {
		unix.Close(n)
		return s, false
	}
	return s, true
}

func (s socket) close() { unix.Close(s.fd) }

func (s socket) proto() Proto {
	if s.typ == unix.SOCK_DGRAM {
		return UDP
	}
	return TCP
}

// inode identifies the socket across fds and processes.
func (s socket) inode() uint64 {
	var st unix.Stat_t
	if unix.Fstat(s.fd, &st) != nil {
		return 0
	}
	return st.Ino
}

// nonBlocking reports whether the process's socket is O_NONBLOCK (its
// connect returns EINPROGRESS instead of waiting for the handshake).
func (s socket) nonBlocking() bool {
	flags, err := unix.FcntlInt(uintptr(s.fd), unix.F_GETFL, 0)
	return err == nil && flags&unix.O_NONBLOCK != 0
}

func (s socket) v6only() bool {
	if s.family != afInet6 {
		return false
	}
	v, err := unix.GetsockoptInt(s.fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
	return err == nil && v != 0
}

// sockaddrSyscall runs connect or bind with raw sockaddr bytes.
func (s socket) sockaddrSyscall(nr uintptr, sa []byte) error {
	_, _, e := unix.Syscall(nr, uintptr(s.fd), uintptr(unsafe.Pointer(&sa[0])), uintptr(len(sa)))
	if e != 0 {
		return e
	}
	return nil
}

// connect connects to sa. A blocking connect interrupted by one of the
// supervisor's signals goes on in the kernel: wait for it to finish.
func (s socket) connect(sa []byte) error {
	err := s.sockaddrSyscall(unix.SYS_CONNECT, sa)
	if err != unix.EINTR {
		return err
	}
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLOUT}}
	for {
		if _, err := unix.Poll(fds, -1); err != unix.EINTR {
			break
		}
	}
	v, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v != 0 {
		return unix.Errno(v)
	}
	return nil
}

// tcpClose is TCP_CLOSE (include/net/tcp_states.h): no connection, or a
// connect that failed.
const tcpClose = 7

// connectedOrConnecting reports a TCP socket whose connect went through
// (or is under way): another connect on it gets EISCONN or EALREADY from
// the kernel itself.
func (s socket) connectedOrConnecting() bool {
	if s.typ != unix.SOCK_STREAM {
		return false
	}
	info, err := unix.GetsockoptTCPInfo(s.fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	return err == nil && info.State != tcpClose
}

func (s socket) bind(sa []byte) error { return s.sockaddrSyscall(unix.SYS_BIND, sa) }

// name returns the raw local address (getsockname).
func (s socket) name() ([]byte, error) {
	var buf [maxSockaddr]byte
	l := uint32(len(buf))
	_, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(s.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return nil, e
	}
	return buf[:min(int(l), len(buf))], nil
}

func (s socket) localAddr() netip.AddrPort {
	b, err := s.name()
	if err != nil {
		return netip.AddrPort{}
	}
	ap, _ := decodeSockaddr(b)
	return ap
}

// sendmsg sends data (and control messages) to sa, returning the count.
func (s socket) sendmsg(data, control, sa []byte, flags int) (int, error) {
	var msg unix.Msghdr
	var iov unix.Iovec
	if len(data) > 0 {
		iov.Base = &data[0]
		iov.SetLen(len(data))
		msg.Iov = &iov
		msg.Iovlen = 1
	}
	if len(control) > 0 {
		msg.Control = &control[0]
		msg.SetControllen(len(control))
	}
	if len(sa) > 0 {
		msg.Name = &sa[0]
		msg.Namelen = uint32(len(sa))
	}
	for {
		n, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags|unix.MSG_NOSIGNAL))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// writeSockaddr answers getpeername/getsockname: it copies sa into the
// process's buffer, truncated to the length the process gave, and stores the
// full length, as the kernel does.
func (c *call) writeSockaddr(addr, lenAddr uint64, sa []byte) error {
	var lb [4]byte
	if err := c.read(lenAddr, lb[:]); err != nil {
		return err
	}
	have := int(int32(*(*uint32)(unsafe.Pointer(&lb[0]))))
	if have < 0 {
		return unix.EINVAL
	}
	if !c.valid() {
		return errGone
	}
	if err := c.write(addr, sa[:min(have, len(sa))]); err != nil {
		return err
	}
	*(*uint32)(unsafe.Pointer(&lb[0])) = uint32(len(sa))
	return c.write(lenAddr, lb[:])
}

// changedSocket finds the caller's socket (argument 0) in t, the table of
// sockets the supervisor changed. For any other socket it lets the call
// continue and returns ok=false. The caller closes sock.
func changedSocket[V any](c *call, t *socketTable[V]) (sock socket, v V, ok bool) {
	if t.empty() {
		c.cont()
		return sock, v, false
	}
	if sock, ok = c.openSocket(c.arg(0)); !ok {
		c.cont()
		return sock, v, false
	}
	if v, ok = t.get(sock.inode()); !ok {
		sock.close()
		c.cont()
	}
	return sock, v, ok
}

// answerSockaddr completes getpeername/getsockname with sa.
func (c *call) answerSockaddr(sa []byte) {
	switch err := c.writeSockaddr(c.arg(1), c.arg(2), sa); err {
	case nil:
		c.ret(0)
	case errGone:
	default:
		c.fail(unix.EFAULT)
	}
}
