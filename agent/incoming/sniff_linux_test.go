package incoming

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/protocol"
)

// pipeHandoff hands each mirror copy to a pipe the test reads.
type pipeHandoff struct {
	fakeSession
	got chan net.Conn
}

func (p pipeHandoff) OpenIncoming(context.Context, protocol.IncomingHeader) (net.Conn, error) {
	a, b := net.Pipe()
	p.got <- b
	return a, nil
}

// A connection's client bytes reach the mirror once and in order, whatever
// the order and repetition of the captured segments.
func TestSniffReassembly(t *testing.T) {
	h := pipeHandoff{fakeSession("m"), make(chan net.Conn, 1)}
	sink := newMirrorSink(context.Background(), h, protocol.IncomingHeader{}, slog.New(slog.DiscardHandler))
	c := &sniffConn{early: map[uint32][]byte{}, sinks: []*mirrorSink{sink}, next: 1000}
	const isn = 1000
	seg := func(off int, s string) { c.accept(uint32(isn+off), []byte(s)) }
	seg(0, "GET / ")      // in order
	seg(0, "GET / ")      // retransmitted
	seg(11, "1.1\r\n")    // early
	seg(3, " / HTTP/")    // overlaps what was seen, then fills the gap
	seg(16, "\r\n")       // in order after the early one drained
	seg(9, "P/1.1\r\n\r") // seen before, all of it
	if c.next != isn+18 || len(c.early) != 0 || c.earlyN != 0 {
		t.Fatalf("next %d (want %d), early %v", c.next, isn+18, c.early)
	}
	sink.finish()
	conn := <-h.got
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(conn)
	if string(got) != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("mirror got %q", got)
	}
}

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
	for _, c := range []struct {
		name     string
		v6       bool
		outgoing bool
		proto    byte
		port     uint16
		flags    byte
		payload  int
		want     bool
	}{
		{"v4 data", false, false, 6, 8080, ack | psh, 83, true},
		{"v4 data, second port", false, false, 6, 9090, ack, 1, true},
		{"v4 bare ack", false, false, 6, 8080, ack, 0, false},
		{"v4 syn", false, false, 6, 8080, syn, 0, true},
		{"v4 fin", false, false, 6, 8080, fin | ack, 0, true},
		{"v4 rst", false, false, 6, 8080, rst, 0, true},
		{"v4 other port", false, false, 6, 8081, ack | psh, 83, false},
		{"v4 udp", false, false, 17, 8080, 0, 83, false},
		{"v4 outgoing copy", false, true, 6, 8080, ack | psh, 83, false},
		{"v6 data", true, false, 6, 8080, ack | psh, 200, true},
		{"v6 bare ack", true, false, 6, 8080, ack, 0, false},
		{"v6 syn", true, false, 6, 9090, syn, 0, true},
		{"v6 other port", true, false, 6, 22, ack, 10, false},
	} {
		pkt, proto := tcpPacket(c.v6, c.proto, c.port, c.flags, c.payload)
		pkttype := uint32(unix.PACKET_HOST)
		if c.outgoing {
			pkttype = unix.PACKET_OUTGOING
		}
		if got := runBPF(t, p, pkt, proto, pkttype) != 0; got != c.want {
			t.Errorf("%s: passed %v, want %v", c.name, got, c.want)
		}
	}
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

// hostPod makes sockets in the test's own network namespace.
type hostPod struct{}

func (hostPod) Socket(domain, typ, proto int) (int, error) { return unix.Socket(domain, typ, proto) }
func (hostPod) InNetns(f func() error) error               { return f() }

// The capture, through the kernel's packet ring and segment by segment
// (kernels without one): a connection's client bytes on loopback reach
// the mirror whole and in order, and the server's answers (and loopback's
// outgoing duplicates) don't.
func TestSniffCapture(t *testing.T) {
	t.Run("ring", func(t *testing.T) { testSniffCapture(t, true) })
	t.Run("recvfrom", func(t *testing.T) {
		noPacketRing = true
		defer func() { noPacketRing = false }()
		testSniffCapture(t, false)
	})
}

func testSniffCapture(t *testing.T, ring bool) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	h := pipeHandoff{fakeSession("m"), make(chan net.Conn, 1)}
	tab := newTable()
	tab.add(port, &sub{sess: h, mode: protocol.ModeMirror}, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newSniffer(ctx, hostPod{}, tab, slog.New(slog.DiscardHandler))
	if err := s.add(port); err != nil {
		t.Fatalf("capture on loopback (needs CAP_NET_RAW): %v", err)
	}
	defer s.close()
	if (s.ring != nil) != ring {
		t.Fatalf("packet ring %v, want %v", s.ring != nil, ring)
	}

	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			if err != nil {
				return
			}
			c.Write([]byte("answer:" + string(b[:n]))) // must not reach the mirror
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for i := range 50 {
		msg := []byte{byte('a' + i%26), byte('0' + i%10), '\n'}
		want = append(want, msg...)
		c.Write(msg)
		c.Read(make([]byte, 64))
	}
	c.Close()

	var mirror net.Conn
	select {
	case mirror = <-h.got:
	case <-time.After(5 * time.Second):
		t.Fatal("no mirror copy opened")
	}
	mirror.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(mirror)
	if string(got) != string(want) {
		t.Fatalf("mirror got %q, want %q", got, want)
	}
}

// tcp4 is a captured IPv4 TCP segment.
func tcp4(src, dst netip.AddrPort, seq uint32, flags byte, payload string) []byte {
	b := make([]byte, 40+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[9] = unix.IPPROTO_TCP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[20:], src.Port())
	binary.BigEndian.PutUint16(b[22:], dst.Port())
	binary.BigEndian.PutUint32(b[24:], seq)
	b[32] = 5 << 4
	b[33] = flags
	copy(b[40:], payload)
	return b
}

// A copy that can't be whole is dropped (and the session told), not
// passed off as the connection's bytes: a segment cut short by the
// capture, or a gap still open when the connection ends.
func TestSniffIncompleteCopyDropped(t *testing.T) {
	const syn, fin, rst = 0x02, 0x01, 0x04
	client, server := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:8080")
	for _, tc := range []struct {
		name string
		run  func(s *sniffer)
	}{
		{"truncated segment", func(s *sniffer) {
			s.segment(tcp4(client, server, 101, 0, "GET / HTTP/1.1\r\n"), true)
		}},
		{"gap at the end", func(s *sniffer) {
			s.segment(tcp4(client, server, 101, 0, "ab"), false)
			s.segment(tcp4(client, server, 105, fin, "ef"), false) // "cd" never came
			s.segment(tcp4(client, server, 108, rst, ""), false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := pipeHandoff{fakeSession("m"), make(chan net.Conn, 1)}
			tab := newTable()
			tab.add(server.Port(), &sub{sess: h, mode: protocol.ModeMirror}, false)
			s := newSniffer(context.Background(), hostPod{}, tab, slog.New(slog.DiscardHandler))
			s.ports[server.Port()] = true
			s.segment(tcp4(client, server, 100, syn, ""), false)
			c := s.conns[flowKey{client, server}]
			if c == nil {
				t.Fatal("the SYN opened no copy")
			}
			tc.run(s)
			if s.conns[flowKey{client, server}] != nil {
				t.Fatal("the copy did not end")
			}
			k := c.sinks[0]
			k.mu.Lock()
			dropped := k.dropped
			k.mu.Unlock()
			if dropped != protocol.ReasonMirrorIncomplete {
				t.Fatalf("an incomplete copy: dropped %q, want %q", dropped, protocol.ReasonMirrorIncomplete)
			}
		})
	}
}
