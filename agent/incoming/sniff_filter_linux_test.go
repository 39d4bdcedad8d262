package incoming

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// The filter passes TCP to the subscribed ports only, and of that only
// what carries client bytes or opens or ends a connection.
func TestSniffFilter(t *testing.T) {
	p := sniffFilter(map[uint16]bool{8080: true, 9090: true})
	for i, ins := range p {
		if ins.Code&0x07 == unix.BPF_JMP {
			if i+1+int(ins.Jt) >= len(p) || i+1+int(ins.Jf) >= len(p) || i+1+int(ins.K) > len(p) && ins.Code == unix.BPF_JMP|unix.BPF_JA {
				t.Fatalf("instruction %d jumps out of the program: %+v", i, ins)
			}
		}
	}
	if len(sniffFilter(nil)) != 1 {
		t.Fatal("no ports must reject everything")
	}
	const ack, psh, syn, fin, rst = 0x10, 0x08, 0x02, 0x01, 0x04
	for _, c := range []filterCase{
		{"v4 data", false, false, 6, 8080, ack | psh, 83, false, true},
		{"v4 data, second port", false, false, 6, 9090, ack, 1, false, true},
		{"v4 bare ack", false, false, 6, 8080, ack, 0, false, false},
		{"v4 syn", false, false, 6, 8080, syn, 0, false, true},
		{"v4 fin", false, false, 6, 8080, fin | ack, 0, false, true},
		{"v4 rst", false, false, 6, 8080, rst, 0, false, true},
		{"v4 other port", false, false, 6, 8081, ack | psh, 83, false, false},
		{"v4 udp", false, false, 17, 8080, 0, 83, false, false},
		{"v4 outgoing copy", false, true, 6, 8080, ack | psh, 83, false, false},
		{"v4 outgoing rst to the port", false, true, 6, 8080, rst, 0, false, false},
		{"v4 server's rst", false, true, 6, 8080, rst | ack, 0, true, true},
		{"v4 server's rst, other port", false, true, 6, 8081, rst | ack, 0, true, false},
		{"v4 server's data", false, true, 6, 8080, ack | psh, 83, true, false},
		{"v4 server's rst, inbound", false, false, 6, 8080, rst, 0, true, false},
		{"v6 server's rst", true, true, 6, 9090, rst, 0, true, true},
		{"v6 data", true, false, 6, 8080, ack | psh, 200, false, true},
		{"v6 bare ack", true, false, 6, 8080, ack, 0, false, false},
		{"v6 syn", true, false, 6, 9090, syn, 0, false, true},
		{"v6 other port", true, false, 6, 22, ack, 10, false, false},
	} {
		if got := c.passes(t, p); got != c.want {
			t.Errorf("%s: passed %v, want %v", c.name, got, c.want)
		}
	}
}

// filterCase is a TCP segment the capture filter is run on.
type filterCase struct {
	name     string
	v6       bool
	outgoing bool
	proto    byte
	port     uint16
	flags    byte
	payload  int
	reply    bool // from the port rather than to it
	want     bool
}

// passes reports whether prog passes the case's segment.
func (c filterCase) passes(t *testing.T, prog []unix.SockFilter) bool {
	pkt, proto := tcpPacket(c.v6, c.proto, c.port, c.flags, c.payload)
	if c.reply {
		swapPorts(pkt, c.payload)
	}
	pkttype := uint32(unix.PACKET_HOST)
	if c.outgoing {
		pkttype = unix.PACKET_OUTGOING
	}
	return runBPF(t, prog, pkt, proto, pkttype) != 0
}

// tcpPacket builds an IP packet (IPv4 with 8 bytes of options, to move
// the TCP header) with a TCP header of 32 bytes (12 of options).
func tcpPacket(v6 bool, proto byte, port uint16, flags byte, payload int) ([]byte, uint32) {
	tcp := make([]byte, 32+payload)
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], port)
	tcp[12] = 8 << 4
	tcp[13] = flags
	if v6 {
		ip := make([]byte, 40)
		ip[0] = 6 << 4
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
		ip[6] = proto
		return append(ip, tcp...), unix.ETH_P_IPV6
	}
	ip := make([]byte, 28)
	ip[0] = 4<<4 | 7
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(tcp)))
	ip[9] = proto
	return append(ip, tcp...), unix.ETH_P_IP
}

// runBPF interprets the classic BPF instructions the filter uses, with the
// ancillary loads of protocol and packet type.
func runBPF(t *testing.T, prog []unix.SockFilter, pkt []byte, proto, pkttype uint32) uint32 {
	var a, x uint32
	var mem [16]uint32
	load := func(off uint32, size int) uint32 {
		switch off {
		case 0xfffff000:
			return proto
		case 0xfffff004:
			return pkttype
		}
		if int(off)+size > len(pkt) {
			t.Fatalf("load of %d bytes at %d past a %d-byte packet", size, off, len(pkt))
		}
		switch size {
		case 1:
			return uint32(pkt[off])
		case 2:
			return uint32(binary.BigEndian.Uint16(pkt[off:]))
		}
		return binary.BigEndian.Uint32(pkt[off:])
	}
	sizes := map[uint16]int{unix.BPF_W: 4, unix.BPF_H: 2, unix.BPF_B: 1}
	for pc := 0; pc < len(prog); pc++ {
		ins := prog[pc]
		switch cls := ins.Code & 0x07; cls {
		case unix.BPF_LD:
			switch ins.Code & 0xe0 {
			case unix.BPF_ABS:
				a = load(ins.K, sizes[ins.Code&0x18])
			case unix.BPF_IND:
				a = load(x+ins.K, sizes[ins.Code&0x18])
			case unix.BPF_MEM:
				a = mem[ins.K]
			default:
				t.Fatalf("ld mode %#x", ins.Code)
			}
		case unix.BPF_LDX:
			switch ins.Code & 0xe0 {
			case unix.BPF_MSH:
				x = uint32(pkt[ins.K]&0x0f) * 4
			case unix.BPF_IMM:
				x = ins.K
			case unix.BPF_MEM:
				x = mem[ins.K]
			default:
				t.Fatalf("ldx mode %#x", ins.Code)
			}
		case unix.BPF_ST:
			mem[ins.K] = a
		case unix.BPF_ALU:
			v := ins.K
			if ins.Code&unix.BPF_X != 0 {
				v = x
			}
			switch ins.Code & 0xf0 {
			case unix.BPF_ADD:
				a += v
			case unix.BPF_SUB:
				a -= v
			case unix.BPF_RSH:
				a >>= v
			case unix.BPF_LSH:
				a <<= v
			default:
				t.Fatalf("alu op %#x", ins.Code)
			}
		case unix.BPF_JMP:
			var cond bool
			switch ins.Code & 0xf0 {
			case unix.BPF_JA:
				pc += int(ins.K)
				continue
			case unix.BPF_JEQ:
				cond = a == ins.K
			case unix.BPF_JSET:
				cond = a&ins.K != 0
			default:
				t.Fatalf("jump op %#x", ins.Code)
			}
			if cond {
				pc += int(ins.Jt)
			} else {
				pc += int(ins.Jf)
			}
		case unix.BPF_RET:
			return ins.K
		default:
			t.Fatalf("instruction class %#x", cls)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

// Many ports: the filter's jumps still land (a conditional jump reaches
// 255 instructions), for the first port and the last, and the program
// stays within the kernel's 4,096 instructions for a thousand.
func TestSniffFilterManyPorts(t *testing.T) {
	ports := map[uint16]bool{}
	for p := uint16(10000); p < 11000; p++ {
		ports[p] = true
	}
	prog := sniffFilter(ports)
	if len(prog) > 4096 {
		t.Fatalf("%d instructions for 1,000 ports", len(prog))
	}
	for i, ins := range prog {
		if ins.Code&0x07 == unix.BPF_JMP && (i+1+int(ins.Jt) >= len(prog) || i+1+int(ins.Jf) >= len(prog) ||
			ins.Code == unix.BPF_JMP|unix.BPF_JA && i+1+int(ins.K) >= len(prog)) {
			t.Fatalf("instruction %d jumps out of the program: %+v", i, ins)
		}
	}
	const ack, psh, rst = 0x10, 0x08, 0x04
	for _, c := range []filterCase{
		{name: "first port", port: 10000, proto: 6, flags: ack | psh, payload: 10, want: true},
		{name: "last port", port: 10999, proto: 6, flags: ack | psh, payload: 10, want: true},
		{name: "other port", port: 11000, proto: 6, flags: ack | psh, payload: 10},
		{name: "server's rst, last port", port: 10999, proto: 6, outgoing: true, reply: true, flags: rst, want: true},
		{name: "server's rst, other port", port: 11000, proto: 6, outgoing: true, reply: true, flags: rst},
	} {
		if got := c.passes(t, prog); got != c.want {
			t.Errorf("%s: passed %v, want %v", c.name, got, c.want)
		}
	}
}

// swapPorts turns tcpPacket's segment around: from the port, not to it.
func swapPorts(pkt []byte, payload int) {
	tcp := pkt[len(pkt)-32-payload:]
	src, dst := binary.BigEndian.Uint16(tcp[0:]), binary.BigEndian.Uint16(tcp[2:])
	binary.BigEndian.PutUint16(tcp[0:], dst)
	binary.BigEndian.PutUint16(tcp[2:], src)
}
