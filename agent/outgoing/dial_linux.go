//go:build linux

package outgoing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Dialer connects sockets that Socket creates (in the pod's namespace).
type Dialer struct {
	// Socket creates a non-blocking socket, e.g. target.Target.Socket.
	Socket func(domain, typ, proto int) (int, error)
}

// DialError is a failed dial; Errno is what connect(2) (or the timeout)
// left, the errno a local process should get.
type DialError struct {
	Network, Address string
	Err              syscall.Errno
	Detail           string
}

func (e *DialError) Error() string {
	msg := fmt.Sprintf("dial %s %s: %v", e.Network, e.Address, e.Err)
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// Errno implements protocol.ErrnoError.
func (e *DialError) Errno() syscall.Errno { return e.Err }

func (e *DialError) Unwrap() error { return e.Err }

// Timeout reports whether the dial timed out.
func (e *DialError) Timeout() bool { return e.Err == syscall.ETIMEDOUT }

// Dial connects to address, an IP literal and port, over network (tcp,
// tcp4, tcp6, udp, udp4, udp6). Names are not resolved here: the helper
// resolves them through the pod's DNS first, as the local process does.
// ctx's deadline bounds the TCP handshake (ETIMEDOUT).
func (d *Dialer) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	fail := func(e syscall.Errno, detail string) error {
		return &DialError{Network: network, Address: address, Err: e, Detail: detail}
	}
	sotype, family, err := socketKind(network)
	if err != nil {
		return nil, fail(syscall.EPROTONOSUPPORT, err.Error())
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fail(syscall.EINVAL, "the address must be an IP literal and a port")
	}
	sa, domain, err := sockaddr(ap, family)
	if err != nil {
		return nil, fail(syscall.EAFNOSUPPORT, err.Error())
	}
	fd, err := d.Socket(domain, sotype, 0)
	if err != nil {
		return nil, fail(errnoOf(err), "creating the socket")
	}
	f := os.NewFile(uintptr(fd), "pod "+network+" "+address)
	defer f.Close() // the net.Conn below holds its own descriptor
	if err := connect(ctx, f, sa); err != nil {
		return nil, fail(errnoOf(err), "")
	}
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, fail(errnoOf(err), "wrapping the socket")
	}
	return conn, nil
}

func socketKind(network string) (sotype, family int, err error) {
	switch network {
	case "tcp":
		return unix.SOCK_STREAM, unix.AF_UNSPEC, nil
	case "tcp4":
		return unix.SOCK_STREAM, unix.AF_INET, nil
	case "tcp6":
		return unix.SOCK_STREAM, unix.AF_INET6, nil
	case "udp":
		return unix.SOCK_DGRAM, unix.AF_UNSPEC, nil
	case "udp4":
		return unix.SOCK_DGRAM, unix.AF_INET, nil
	case "udp6":
		return unix.SOCK_DGRAM, unix.AF_INET6, nil
	}
	return 0, 0, fmt.Errorf("network %q is not tcp or udp", network)
}

// sockaddr picks the socket family for ap: IPv4 (and v4-mapped IPv6)
// addresses use AF_INET unless the network insists on tcp6/udp6.
func sockaddr(ap netip.AddrPort, family int) (unix.Sockaddr, int, error) {
	ip := ap.Addr()
	if ip.Is4In6() && family != unix.AF_INET6 {
		ip = ip.Unmap()
	}
	switch {
	case ip.Is4() && family != unix.AF_INET6:
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ip.As4()}, unix.AF_INET, nil
	case ip.Is6() && family != unix.AF_INET:
		sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}
		if zone := ip.Zone(); zone != "" {
			// Interface names belong to the pod's namespace; only numeric
			// zones are taken as they are.
			id, err := strconv.ParseUint(zone, 10, 32)
			if err != nil {
				return nil, 0, fmt.Errorf("zone %q: use the interface index", zone)
			}
			sa.ZoneId = uint32(id)
		}
		return sa, unix.AF_INET6, nil
	}
	return nil, 0, fmt.Errorf("address %s does not fit the network", ip)
}

// aLongTimeAgo is a deadline in the past, to wake a blocked wait.
var aLongTimeAgo = time.Unix(1, 0)

// connect runs a non-blocking connect and waits for it on the runtime's
// poller, within ctx.
func connect(ctx context.Context, f *os.File, sa unix.Sockaddr) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var connErr error
	if cerr := rc.Control(func(fd uintptr) { connErr = unix.Connect(int(fd), sa) }); cerr != nil {
		return cerr
	}
	switch connErr {
	case nil, unix.EISCONN:
		return nil
	case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
	default:
		return connErr
	}
	if d, ok := ctx.Deadline(); ok {
		f.SetWriteDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(aLongTimeAgo) })
	defer stop()
	connErr = nil
	err = rc.Write(func(fd uintptr) bool {
		soerr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			connErr = err
			return true
		}
		switch e := syscall.Errno(soerr); e {
		case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
			return false
		case 0, unix.EISCONN:
			// SO_ERROR is 0 also before the handshake ends: only a peer
			// name proves the connection is up.
			_, err := unix.Getpeername(int(fd))
			return err == nil
		default:
			connErr = e
			return true
		}
	})
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return context.Canceled
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return syscall.ETIMEDOUT
		}
		return err
	}
	f.SetWriteDeadline(time.Time{})
	return connErr
}

// errnoOf extracts the errno a failure should be reported with.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.Canceled):
		return syscall.ECANCELED
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return syscall.ETIMEDOUT
	}
	return syscall.EIO
}
