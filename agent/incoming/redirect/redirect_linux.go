//go:build linux

package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// nftablesHook, when set (by tests), replaces the nftables attempt of New
// with its error.
var nftablesHook func() error

// New returns a Redirector on the backend o.Backend names, or on nftables
// with a fallback to iptables when nftables can't be used (no nf_tables,
// a kernel without owned tables, a missing nat chain type); the reason is
// logged. If both fail, the error tells both reasons.
func New(ns Netns, o Options) (Redirector, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch o.Backend {
	case BackendNftables:
		return NewNftables(ns, o.ListenPort, o.Mark, o.Name)
	case BackendIptables:
		return NewIptables(ns, o.ListenPort, o.Mark, o.Name)
	case "":
	default:
		return nil, fmt.Errorf("redirect: unknown backend %q", o.Backend)
	}
	var r Redirector
	var nftErr error
	if nftablesHook != nil {
		nftErr = nftablesHook()
	} else {
		r, nftErr = NewNftables(ns, o.ListenPort, o.Mark, o.Name)
	}
	if nftErr == nil {
		return r, nil
	}
	log.Warn("redirect: nftables unusable, falling back to iptables", "err", nftErr)
	r, err := NewIptables(ns, o.ListenPort, o.Mark, o.Name)
	if err != nil {
		return nil, errors.Join(nftErr, err)
	}
	return r, nil
}

// checkConfig validates what every backend needs.
func checkConfig(listenPort uint16, mark uint32) error {
	if listenPort == 0 {
		return errors.New("redirect: the listen port must not be 0")
	}
	if mark == 0 {
		return errors.New("redirect: the mark must not be 0 (unmarked sockets would be exempt)")
	}
	return nil
}

// checkPort validates a port to redirect.
func checkPort(port, listenPort uint16) error {
	if port == 0 {
		return errors.New("redirect: port 0")
	}
	if port == listenPort {
		return fmt.Errorf("redirect: port %d is the listener's own", port)
	}
	return nil
}

// baseName is the name of a table or chain prefix: name (default
// "doppel") and the pid.
func baseName(name string) string {
	if name == "" {
		name = "doppel"
	}
	return name + "-" + strconv.Itoa(os.Getpid())
}

// portSet is the sorted set of redirected ports.
type portSet []uint16

func (s portSet) has(p uint16) bool { _, ok := slices.BinarySearch(s, p); return ok }

func (s portSet) with(p uint16) portSet {
	i, ok := slices.BinarySearch(s, p)
	if ok {
		return s
	}
	return slices.Insert(slices.Clone(s), i, p)
}

func (s portSet) without(p uint16) portSet {
	i, ok := slices.BinarySearch(s, p)
	if !ok {
		return s
	}
	return slices.Delete(slices.Clone(s), i, i+1)
}

// IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h.
const ip6tSOOriginalDst = 80

// OriginalDst returns the destination a redirected connection was sent to,
// before the redirect: SO_ORIGINAL_DST for IPv4 (also on a dual-stack
// listener, where the local address is v4-mapped; the answer is plain
// IPv4), IP6T_SO_ORIGINAL_DST for IPv6. c must be a *net.TCPConn or
// another syscall.Conn whose local address is a *net.TCPAddr.
//
// A connection made straight to the listener (not redirected) gives the
// listener's own address, as long as conntrack tracks it: callers should
// refuse those (the listener is reachable from outside the pod).
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("redirect: %T has no socket", c)
	}
	la, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("redirect: local address %v is not TCP", c.LocalAddr())
	}
	v4 := la.IP.To4() != nil
	rc, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var (
		buf  [unix.SizeofSockaddrInet6]byte
		serr error
	)
	cerr := rc.Control(func(fd uintptr) {
		level, opt := unix.SOL_IP, unix.SO_ORIGINAL_DST
		size := uint32(unix.SizeofSockaddrInet4)
		if !v4 {
			level, opt, size = unix.SOL_IPV6, ip6tSOOriginalDst, unix.SizeofSockaddrInet6
		}
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(opt),
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if e != 0 {
			serr = os.NewSyscallError("getsockopt(original dst)", e)
		}
	})
	if cerr != nil {
		return netip.AddrPort{}, cerr
	}
	if serr != nil {
		return netip.AddrPort{}, serr
	}
	// struct sockaddr_in / sockaddr_in6: family (host order), port (network
	// order), then the address (after the flow info for IPv6).
	family := binary.NativeEndian.Uint16(buf[0:2])
	port := binary.BigEndian.Uint16(buf[2:4])
	switch family {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[4:8])), port), nil
	case unix.AF_INET6:
		ip := netip.AddrFrom16([16]byte(buf[8:24])).Unmap()
		if scope := binary.NativeEndian.Uint32(buf[24:28]); scope != 0 && ip.Is6() {
			ip = ip.WithZone(strconv.FormatUint(uint64(scope), 10))
		}
		return netip.AddrPortFrom(ip, port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("redirect: original destination of family %d", family)
}

// SetMark sets SO_MARK on socket fd (CAP_NET_ADMIN needed): the agent marks
// its passthrough connections with the Redirector's mark so that they reach
// the original server instead of coming back to the agent.
func SetMark(fd int, mark uint32) error {
	return os.NewSyscallError("setsockopt(SO_MARK)", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)))
}

// MarkControl returns a net.Dialer.Control (or net.ListenConfig.Control)
// function that sets SO_MARK before the socket connects.
func MarkControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = SetMark(int(fd), mark) }); cerr != nil {
			return cerr
		}
		return err
	}
}
