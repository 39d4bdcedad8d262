// Package redirect sends a pod's incoming TCP connections for chosen ports
// to the agent's own listener, so the agent can mirror or steal them.
//
// A Redirector works in the pod's network namespace (Netns). For each port
// P it redirects, it catches connections to P on prerouting (from outside
// the pod) and on output via lo (pod-local callers: probes, sidecars, the
// app itself) and sends them to the agent's listener port L in the same
// namespace. Only SYN packets are matched, so connections that exist when a
// port is added stay where they are; packets of sockets carrying the
// agent's mark (SO_MARK, see SetMark and MarkControl) are never redirected,
// so the agent's passthrough connections reach the original server.
// OriginalDst tells the agent where a redirected connection was going, and
// Flush resets the connections that existed before a port was stolen.
//
// Backends:
//
//   - nftables (NewNftables): an inet table created with the owner flag
//     (NFT_TABLE_F_OWNER, kernel 5.12 and later) from a netlink socket made
//     in the pod's namespace. The kernel deletes the table the moment that
//     socket closes, so a crashed or SIGKILLed agent never leaves traffic
//     redirected to nowhere, and no other process can change it.
//   - iptables (NewIptables), where nftables can't be used: chains of its
//     own in the nat table, set up with the iptables and ip6tables
//     binaries, and a guardian process that removes them when the agent
//     dies. The guardian is the agent's own binary re-executed: the agent's
//     main must call MaybeRunGuardian first thing (see there).
//
// New picks nftables and falls back to iptables, logging why.
//
// Linux only: elsewhere the constructors, OriginalDst, SetMark and Flush
// return ErrNotSupported.
package redirect

import (
	"errors"
	"log/slog"
)

// ErrNotSupported is returned on systems without netfilter.
var ErrNotSupported = errors.New("redirect: not supported on this system")

// ErrClosed is returned by the methods of a closed Redirector.
var ErrClosed = errors.New("redirect: redirector closed")

// Backend names, as Redirector.Backend returns them.
const (
	BackendNftables = "nftables"
	BackendIptables = "iptables"
)

// Netns runs work on a thread that is in the pod's network namespace;
// sockets (netlink ones included) and child processes created by f belong
// to that namespace. *target.Target is one.
type Netns interface {
	InNetns(f func() error) error
}

// Redirector redirects a set of TCP ports of a pod to the agent's listener.
// Its methods are safe for concurrent use.
type Redirector interface {
	// Add starts redirecting new connections to port (IPv4 and IPv6).
	// Adding a port twice is no error.
	Add(port uint16) error
	// Remove stops redirecting port; connections already redirected stay
	// with the agent. Removing a port that is not redirected is no error.
	Remove(port uint16) error
	// Ports returns the redirected ports, in ascending order.
	Ports() []uint16
	// Close removes every redirect.
	Close() error
	// Backend is BackendNftables or BackendIptables.
	Backend() string
	// Name is the nftables table's name, or the prefix of the iptables
	// chains' names (NAME-PID).
	Name() string
}

// Options configure New.
type Options struct {
	// ListenPort is the agent's redirect listener, in the pod's namespace
	// (it should accept IPv4 and IPv6).
	ListenPort uint16
	// Mark is the SO_MARK of the agent's passthrough connections, which are
	// never redirected. It must not be 0.
	Mark uint32
	// Name starts the table's (chains') name; the agent's pid is added, so
	// that agents can coexist in one pod. "" means "doppel".
	Name string
	// Backend forces BackendNftables or BackendIptables; "" tries nftables
	// and falls back to iptables.
	Backend string
	// Logger gets the reason for a fallback; nil discards it.
	Logger *slog.Logger
}
