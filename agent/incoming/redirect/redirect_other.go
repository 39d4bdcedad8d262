//go:build !linux

package redirect

import (
	"net"
	"net/netip"
	"syscall"
)

// New returns ErrNotSupported outside Linux.
func New(Netns, Options) (Redirector, error) { return nil, ErrNotSupported }

// NewNftables returns ErrNotSupported outside Linux.
func NewNftables(Netns, uint16, uint32, string) (Redirector, error) { return nil, ErrNotSupported }

// NewIptables returns ErrNotSupported outside Linux.
func NewIptables(Netns, uint16, uint32, string) (Redirector, error) { return nil, ErrNotSupported }

// MaybeRunGuardian does nothing outside Linux.
func MaybeRunGuardian() {}

// OriginalDst returns ErrNotSupported outside Linux.
func OriginalDst(net.Conn) (netip.AddrPort, error) { return netip.AddrPort{}, ErrNotSupported }

// SetMark returns ErrNotSupported outside Linux.
func SetMark(int, uint32) error { return ErrNotSupported }

// MarkControl returns a function that fails with ErrNotSupported outside
// Linux.
func MarkControl(uint32) func(network, address string, c syscall.RawConn) error {
	return func(string, string, syscall.RawConn) error { return ErrNotSupported }
}

// Flush returns ErrNotSupported outside Linux.
func Flush(Netns, uint16, uint32) (int, error) { return 0, ErrNotSupported }
