package layer

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Linux address families and sockaddr sizes; the layer reads and writes the
// kernel's sockaddr bytes in the target's memory, so it works on them
// directly rather than through a portable socket API.
const (
	afUnspec = 0
	afUnix   = 1
	afInet   = 2
	afInet6  = 10

	sizeofSockaddrIn  = 16
	sizeofSockaddrIn6 = 28
	// sizeofSockaddrIn6RFC2133 is the shortest sockaddr_in6 the kernel takes
	// (without sin6_scope_id).
	sizeofSockaddrIn6RFC2133 = 24
	// maxSockaddr is sizeof(struct sockaddr_storage).
	maxSockaddr = 128
)

var errFamily = errors.New("layer: address does not fit the socket's family")

// sockaddrFamily returns the family of raw sockaddr bytes, or -1 if b is too
// short to have one.
func sockaddrFamily(b []byte) int {
	if len(b) < 2 {
		return -1
	}
	return int(binary.LittleEndian.Uint16(b))
}

// decodeSockaddr returns the IP address and port of a sockaddr_in or
// sockaddr_in6 (v4-mapped addresses unmapped). ok is false for other
// families and for buffers the kernel would reject as too short.
func decodeSockaddr(b []byte) (ap netip.AddrPort, ok bool) {
	switch sockaddrFamily(b) {
	case afInet:
		if len(b) < sizeofSockaddrIn {
			return ap, false
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:])), true
	case afInet6:
		if len(b) < sizeofSockaddrIn6RFC2133 {
			return ap, false
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), binary.BigEndian.Uint16(b[2:])), true
	}
	return ap, false
}

// encodeSockaddr returns the sockaddr for connecting or sending from a socket
// of family to ap. IPv6 sockets reach IPv4 addresses v4-mapped; a v6-only
// socket cannot, so an IPv4 loopback address becomes ::1 there. IPv4
// sockets reach ::1 as 127.0.0.1.
func encodeSockaddr(family int, ap netip.AddrPort, v6only bool) ([]byte, error) {
	a := ap.Addr().Unmap()
	switch family {
	case afInet:
		if a.Is6() {
			if !a.IsLoopback() {
				return nil, errFamily
			}
			a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		b := make([]byte, sizeofSockaddrIn)
		binary.LittleEndian.PutUint16(b, afInet)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a4 := a.As4()
		copy(b[4:], a4[:])
		return b, nil
	case afInet6:
		if a.Is4() && v6only {
			if !a.IsLoopback() {
				return nil, errFamily
			}
			a = netip.IPv6Loopback()
		}
		b := make([]byte, sizeofSockaddrIn6)
		binary.LittleEndian.PutUint16(b, afInet6)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a16 := a.As16() // v4-mapped for an IPv4 address
		copy(b[8:], a16[:])
		return b, nil
	}
	return nil, errFamily
}

// withPort returns a copy of the sockaddr_in/in6 b with its port replaced.
func withPort(b []byte, port uint16) []byte {
	c := append([]byte(nil), b...)
	if len(c) >= 4 {
		binary.BigEndian.PutUint16(c[2:], port)
	}
	return c
}
