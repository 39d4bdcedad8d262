//go:build linux

package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Sizes and attribute types of linux/inet_diag.h.
const (
	sizeofInetDiagReqV2 = 56
	sizeofInetDiagMsg   = 72
	inetDiagMark        = 15 // INET_DIAG_MARK, reported to CAP_NET_ADMIN
)

// TCP states (include/net/tcp_states.h) that Flush destroys: every state a
// live connection can be in. Listeners, TIME_WAIT and pending handshakes
// (TCP_NEW_SYN_RECV) are left alone.
const flushStates = 1<<unix.BPF_TCP_ESTABLISHED | 1<<unix.BPF_TCP_SYN_SENT | 1<<unix.BPF_TCP_SYN_RECV |
	1<<unix.BPF_TCP_FIN_WAIT1 | 1<<unix.BPF_TCP_FIN_WAIT2 | 1<<unix.BPF_TCP_CLOSE_WAIT |
	1<<unix.BPF_TCP_LAST_ACK | 1<<unix.BPF_TCP_CLOSING

// diagSock is one socket of a sock_diag dump.
type diagSock struct {
	family        uint8
	id            []byte // struct inet_diag_sockid, as the kernel sent it
	local, remote netip.AddrPort
	mark          uint32
	hasMark       bool
}

// Flush resets the TCP connections in ns whose local port is port (IPv4
// and IPv6): the connections the original server holds, typically after
// Add made new ones go to the agent. It destroys them with SOCK_DESTROY
// (the peer gets a reset, and a client that reconnects is redirected) and
// returns how many. Needs CAP_NET_ADMIN in ns and a kernel with
// CONFIG_INET_DIAG_DESTROY.
//
// Connections whose peer is a socket in ns carrying mark (the agent's
// passthrough connections to the original server) are kept; mark 0 keeps
// none. Listeners, TIME_WAIT sockets and the agent's own connections
// (their local port is the agent's listener's, or an ephemeral one) are
// never touched.
func Flush(ns Netns, port uint16, mark uint32) (int, error) {
	if port == 0 {
		return 0, errors.New("redirect: flush: port 0")
	}
	var nl *netlink.Conn
	if err := ns.InNetns(func() error {
		var err error
		nl, err = netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
		return err
	}); err != nil {
		return 0, fmt.Errorf("redirect: flush: sock_diag socket: %w", err)
	}
	defer nl.Close()
	nl.SetDeadline(time.Now().Add(10 * time.Second))

	var all []diagSock
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := dumpTCP(nl, family)
		if err != nil {
			return 0, fmt.Errorf("redirect: flush: listing TCP sockets: %w", err)
		}
		all = append(all, socks...)
	}
	// The local ends of the agent's marked sockets: a server socket whose
	// peer is one of them serves the agent.
	agents := map[netip.AddrPort]bool{}
	for _, s := range all {
		if mark != 0 && s.hasMark && s.mark == mark {
			agents[s.local] = true
		}
	}
	n := 0
	var errs []error
	for _, s := range all {
		if s.local.Port() != port || agents[s.remote] {
			continue
		}
		switch err := destroy(nl, s); {
		case err == nil:
			n++
		case errors.Is(err, unix.ENOENT):
			// Gone meanwhile.
		default:
			errs = append(errs, fmt.Errorf("%v->%v: %w", s.local, s.remote, err))
		}
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("redirect: flush: SOCK_DESTROY: %w", errors.Join(errs...))
	}
	return n, nil
}

// inetDiagReq is struct inet_diag_req_v2 for TCP.
func inetDiagReq(family uint8, states uint32, id []byte) []byte {
	b := make([]byte, sizeofInetDiagReqV2)
	b[0], b[1] = family, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:8], states)
	copy(b[8:], id)
	return b
}

// dumpTCP lists the TCP sockets of family in flushStates.
func dumpTCP(nl *netlink.Conn, family uint8) ([]diagSock, error) {
	msgs, err := nl.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: netlink.Request | netlink.Dump},
		Data:   inetDiagReq(family, flushStates, nil),
	})
	if err != nil {
		return nil, err
	}
	var socks []diagSock
	for _, m := range msgs {
		if len(m.Data) < sizeofInetDiagMsg {
			continue
		}
		s, err := parseDiagMsg(m.Data)
		if err != nil {
			return nil, err
		}
		socks = append(socks, s)
	}
	return socks, nil
}

// parseDiagMsg decodes struct inet_diag_msg and its attributes.
func parseDiagMsg(b []byte) (diagSock, error) {
	s := diagSock{family: b[0], id: append([]byte{}, b[4:52]...)}
	addr := func(a []byte) netip.Addr {
		if s.family == unix.AF_INET {
			return netip.AddrFrom4([4]byte(a[:4]))
		}
		return netip.AddrFrom16([16]byte(a[:16])).Unmap()
	}
	id := b[4:52] // sport, dport (big endian), src[16], dst[16], if, cookie[2]
	s.local = netip.AddrPortFrom(addr(id[4:20]), binary.BigEndian.Uint16(id[0:2]))
	s.remote = netip.AddrPortFrom(addr(id[20:36]), binary.BigEndian.Uint16(id[2:4]))
	ad, err := netlink.NewAttributeDecoder(b[sizeofInetDiagMsg:])
	if err != nil {
		return s, err
	}
	for ad.Next() {
		if ad.Type() == inetDiagMark {
			s.mark, s.hasMark = ad.Uint32(), true
		}
	}
	return s, ad.Err()
}

// destroy sends SOCK_DESTROY for s (matched by its full id, cookie
// included, so a reused address pair is never hit).
func destroy(nl *netlink.Conn, s diagSock) error {
	_, err := nl.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.SOCK_DESTROY, Flags: netlink.Request | netlink.Acknowledge},
		Data:   inetDiagReq(s.family, ^uint32(0), s.id),
	})
	return err
}
