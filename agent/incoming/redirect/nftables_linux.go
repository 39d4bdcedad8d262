//go:build linux

package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NFT_TABLE_F_OWNER (linux/netfilter/nf_tables.h, kernel 5.12): the table
// belongs to the netlink socket that created it and goes with it.
const nftTableFOwner = 0x2

// nftPriority is the chains' priority: below dstnat (-100), so the
// redirect wins over NAT rules a service mesh registers there (at equal
// priority the chain registered last would win).
const nftPriority = -110

// nftRedirector is the nftables backend. The table lives as long as nl,
// the netlink socket that created it: the struct keeps the only references
// (a dropped Conn would be closed by a finalizer, and the table with it).
type nftRedirector struct {
	mu       sync.Mutex
	cc       *nftables.Conn
	nl       *netlink.Conn // cc's socket, the table's owner
	table    *nftables.Table
	pre, out *nftables.Chain
	listen   uint16
	mark     uint32
	ports    portSet
	closed   bool
}

// NewNftables creates, in ns, an inet table owned by a netlink socket of
// this process, named name-PID (name "" is "doppel"), with a nat
// prerouting and a nat output chain, and no redirect yet. The kernel
// deletes the table when the Redirector is closed or the process dies.
func NewNftables(ns Netns, listenPort uint16, mark uint32, name string) (Redirector, error) {
	if err := checkConfig(listenPort, mark); err != nil {
		return nil, err
	}
	r := &nftRedirector{listen: listenPort, mark: mark,
		table: &nftables.Table{Name: baseName(name), Family: nftables.TableFamilyINet}}
	// Only the socket has to be made in the namespace: what is sent on it
	// later acts there whichever thread sends it.
	err := ns.InNetns(func() error {
		var err error
		r.cc, err = nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
			r.nl = c
			return nil
		}))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redirect: nftables netlink socket: %w", err)
	}
	if r.nl == nil {
		r.cc.CloseLasting()
		return nil, errors.New("redirect: nftables: the netlink socket was not captured")
	}
	if err := r.createOwnedTable(); err != nil {
		r.cc.CloseLasting()
		return nil, err
	}
	r.pre = r.cc.AddChain(&nftables.Chain{Name: "prerouting", Table: r.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(nftPriority)})
	r.out = r.cc.AddChain(&nftables.Chain{Name: "output", Table: r.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(nftPriority)})
	if err := r.cc.Flush(); err != nil {
		r.cc.CloseLasting() // the table goes with the socket
		return nil, fmt.Errorf("redirect: nftables: adding the nat chains to %s: %w", r.table.Name, err)
	}
	return r, nil
}

// createOwnedTable sends NEWTABLE with the owner flag, which the library
// (v0.3.0) can't set, as a batch of its own on the library's socket.
func (r *nftRedirector) createOwnedTable() error {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: append([]byte(r.table.Name), 0)},
		{Type: unix.NFTA_TABLE_FLAGS, Data: binary.BigEndian.AppendUint32(nil, nftTableFOwner)},
	})
	if err != nil {
		return err
	}
	batchHdr := nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)
	msgs := []netlink.Message{
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
			Data: batchHdr},
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl},
			Data: append(nfgenmsg(unix.NFPROTO_INET, 0), attrs...)},
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
			Data: batchHdr},
	}
	r.nl.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer r.nl.SetReadDeadline(time.Time{})
	sent, err := r.nl.SendMessages(msgs)
	if err != nil {
		return fmt.Errorf("redirect: nftables: sending the table: %w", err)
	}
	seq := sent[1].Header.Sequence
	for {
		replies, err := r.nl.Receive()
		if err != nil {
			// An errno in an error message (EOPNOTSUPP: a kernel without
			// owned tables; EEXIST: the name is taken) comes back here.
			return fmt.Errorf("redirect: nftables: creating owned table %s: %w", r.table.Name, err)
		}
		for _, m := range replies {
			if m.Header.Type == netlink.Error && m.Header.Sequence == seq {
				return nil // an ack: errors were returned by Receive
			}
		}
	}
}

// nfgenmsg is struct nfgenmsg: family, version, resource id (big endian).
func nfgenmsg(family uint8, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

// rule returns the expressions of
//
//	[oif lo meta mark != MARK] tcp dport PORT tcp flags syn / syn,ack redirect to :LISTEN
//
// (the bracketed part on output only).
func (r *nftRedirector) rule(port uint16, output bool) []expr.Any {
	var e []expr.Any
	if output {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyOIF, Register: 1},
			// lo is interface 1 in every network namespace (LOOPBACK_IFINDEX).
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, 1)},
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, r.mark)},
		)
	}
	return append(e,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1,
			Mask: []byte{tcpSYN | tcpACK}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tcpSYN}},
		&expr.Immediate{Register: 1, Data: binary.BigEndian.AppendUint16(nil, r.listen)},
		&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	)
}

// TCP flag bits.
const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// apply replaces the rules of both chains with those for ports, in one
// transaction: other ports' redirects never lapse.
func (r *nftRedirector) apply(ports portSet) error {
	r.cc.FlushChain(r.pre)
	r.cc.FlushChain(r.out)
	for _, p := range ports {
		r.cc.AddRule(&nftables.Rule{Table: r.table, Chain: r.pre, Exprs: r.rule(p, false)})
		r.cc.AddRule(&nftables.Rule{Table: r.table, Chain: r.out, Exprs: r.rule(p, true)})
	}
	if err := r.cc.Flush(); err != nil {
		return fmt.Errorf("redirect: nftables: updating %s: %w", r.table.Name, err)
	}
	r.ports = ports
	return nil
}

func (r *nftRedirector) Add(port uint16) error {
	if err := checkPort(port, r.listen); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.ports.has(port) {
		return nil
	}
	return r.apply(r.ports.with(port))
}

func (r *nftRedirector) Remove(port uint16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if !r.ports.has(port) {
		return nil
	}
	return r.apply(r.ports.without(port))
}

func (r *nftRedirector) Ports() []uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint16{}, r.ports...)
}

func (r *nftRedirector) Backend() string { return BackendNftables }

func (r *nftRedirector) Name() string { return r.table.Name }

// Close deletes the table and closes its socket (which alone would delete
// it too).
func (r *nftRedirector) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.cc.DelTable(r.table)
	err := r.cc.Flush()
	if cerr := r.cc.CloseLasting(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("redirect: nftables: deleting %s: %w", r.table.Name, err)
	}
	return nil
}
