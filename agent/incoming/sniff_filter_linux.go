package incoming

import "golang.org/x/sys/unix"

// filterLocked attaches a classic BPF program that passes TCP segments to
// the ports (IPv4 and IPv6 without extension headers) that carry client
// bytes or open or end a connection, and the server's resets from them,
// and nothing else: a bare ACK (one per response, from the client) would
// wake the agent for nothing.
func (s *sniffer) filterLocked(ports map[uint16]bool) error {
	prog := sniffFilter(ports)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	return unix.SetsockoptSockFprog(s.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog)
}

// bpfAsm assembles a classic BPF program whose jumps name labels. A
// conditional jump reaches 255 instructions at most, and the port lists
// grow with the ports: each conditional jump skips over, or onto,
// unconditional jumps (32-bit offsets) to its targets, so any number of
// ports fits (the kernel's limit of 4,096 instructions aside).
type bpfAsm struct {
	prog   []unix.SockFilter
	labels map[string]int
	jumps  map[int]string // unconditional jump -> its target
}

const bpfJA = unix.BPF_JMP | unix.BPF_JA

func (a *bpfAsm) label(name string) { a.labels[name] = len(a.prog) }

func (a *bpfAsm) op(code uint16, k uint32) {
	a.prog = append(a.prog, unix.SockFilter{Code: code, K: k})
}

// jump is a conditional jump (or, with code JA, an unconditional one to
// jt); "" goes on to the next instruction.
func (a *bpfAsm) jump(code uint16, k uint32, jt, jf string) {
	far := func(to string) {
		a.jumps[len(a.prog)] = to
		a.op(bpfJA, 0)
	}
	switch {
	case code == bpfJA:
		far(jt)
	case jt != "" && jf != "":
		a.prog = append(a.prog, unix.SockFilter{Code: code, K: k, Jt: 0, Jf: 1})
		far(jt)
		far(jf)
	case jt != "":
		a.prog = append(a.prog, unix.SockFilter{Code: code, K: k, Jt: 0, Jf: 1})
		far(jt)
	case jf != "":
		a.prog = append(a.prog, unix.SockFilter{Code: code, K: k, Jt: 1, Jf: 0})
		far(jf)
	default:
		a.op(code, k)
	}
}

// portMatch jumps to target if A is one of ports, else goes on.
func (a *bpfAsm) portMatch(ports []uint16, target string) {
	for _, port := range ports {
		a.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, uint32(port), target, "")
	}
}

func (a *bpfAsm) assemble() []unix.SockFilter {
	for at, to := range a.jumps {
		a.prog[at].K = uint32(a.labels[to] - at - 1)
	}
	return a.prog
}

func sniffFilter(ports map[uint16]bool) []unix.SockFilter {
	const (
		ldW       = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		ldH       = unix.BPF_LD | unix.BPF_H | unix.BPF_ABS
		ldB       = unix.BPF_LD | unix.BPF_B | unix.BPF_ABS
		ldHX      = unix.BPF_LD | unix.BPF_H | unix.BPF_IND
		ldBX      = unix.BPF_LD | unix.BPF_B | unix.BPF_IND
		ldxB      = unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH
		ldxK      = unix.BPF_LDX | unix.BPF_W | unix.BPF_IMM
		ldM       = unix.BPF_LD | unix.BPF_MEM
		ldxM      = unix.BPF_LDX | unix.BPF_MEM
		st        = unix.BPF_ST
		addK      = unix.BPF_ALU | unix.BPF_ADD | unix.BPF_K
		subX      = unix.BPF_ALU | unix.BPF_SUB | unix.BPF_X
		rshK      = unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K
		lshK      = unix.BPF_ALU | unix.BPF_LSH | unix.BPF_K
		jeq       = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jset      = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ja        = unix.BPF_JMP | unix.BPF_JA
		ret       = unix.BPF_RET | unix.BPF_K
		finSynRst = 0x07
		rst       = 0x04
		// SKF_AD_OFF + SKF_AD_PROTOCOL / SKF_AD_PKTTYPE.
		adProtocol = 0xfffff000
		adPkttype  = 0xfffff004
	)
	if len(ports) == 0 {
		return []unix.SockFilter{{Code: ret, K: 0}}
	}
	a := &bpfAsm{labels: map[string]int{}, jumps: map[int]string{}}
	// M[2] = the packet type: loopback shows each segment twice, once as
	// outgoing; what leaves the pod is outgoing only.
	a.op(ldW, adPkttype)
	a.op(st, 2)
	a.op(ldW, adProtocol)
	a.jump(jeq, unix.ETH_P_IP, "ipv4", "")
	a.jump(jeq, unix.ETH_P_IPV6, "ipv6", "reject")
	// IPv4: TCP, not a later fragment. X = the header's length, M[0] =
	// the packet's.
	a.label("ipv4")
	a.op(ldB, 9)
	a.jump(jeq, unix.IPPROTO_TCP, "", "reject")
	a.op(ldH, 6)
	a.jump(jset, 0x1fff, "reject", "")
	a.op(ldH, 2)
	a.op(st, 0)
	a.op(ldxB, 0)
	a.jump(ja, 0, "ports", "")
	// IPv6: TCP as the next header (no extension headers).
	a.label("ipv6")
	a.op(ldB, 6)
	a.jump(jeq, unix.IPPROTO_TCP, "", "reject")
	a.op(ldH, 4)
	a.op(addK, 40)
	a.op(st, 0)
	a.op(ldxK, 40)
	// Inbound: the destination port, at X+2.
	a.label("ports")
	a.op(ldM, 2)
	a.jump(jeq, unix.PACKET_OUTGOING, "outgoing", "")
	a.op(ldHX, 2)
	list := make([]uint16, 0, len(ports))
	for p := range ports {
		list = append(list, p)
	}
	a.portMatch(list, "segment")
	a.jump(ja, 0, "reject", "")
	// A SYN, FIN or RST passes; otherwise only a segment with payload:
	// M[0] - X - the TCP header's length.
	a.label("segment")
	a.op(ldBX, 13)
	a.jump(jset, finSynRst, "accept", "")
	a.op(ldBX, 12)
	a.op(rshK, 4)
	a.op(lshK, 2)
	a.op(st, 1)
	a.op(ldM, 0)
	a.op(subX, 0)
	a.op(ldxM, 1)
	a.op(subX, 0)
	a.jump(jeq, 0, "reject", "accept")
	// Outgoing: a reset from the port (the server's, or one a flush made):
	// the client may never send one.
	a.label("outgoing")
	a.op(ldHX, 0)
	a.portMatch(list, "reset")
	a.jump(ja, 0, "reject", "")
	a.label("reset")
	a.op(ldBX, 13)
	a.jump(jset, rst, "accept", "reject")
	a.label("accept")
	a.op(ret, 0x40000)
	a.label("reject")
	a.op(ret, 0)
	return a.assemble()
}
