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
	defer func(d time.Duration) { sniffFinGrace = d }(sniffFinGrace)
	sniffFinGrace = 50 * time.Millisecond
	const syn, fin = 0x02, 0x01
	client, server := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:8080")
	for _, tc := range []struct {
		name string
		run  func(s *sniffer)
	}{
		{"truncated segment", func(s *sniffer) {
			s.segment(tcp4(client, server, 101, 0, "GET / HTTP/1.1\r\n"), true, false)
		}},
		{"gap at the end", func(s *sniffer) {
			s.segment(tcp4(client, server, 101, 0, "ab"), false, false)
			s.segment(tcp4(client, server, 105, fin, "ef"), false, false) // "cd" never came, nor anything after
			time.Sleep(3 * sniffFinGrace)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := pipeHandoff{fakeSession("m"), make(chan net.Conn, 1)}
			tab := newTable()
			tab.add(server.Port(), &sub{sess: h, mode: protocol.ModeMirror}, false)
			s := newSniffer(context.Background(), hostPod{}, tab, slog.New(slog.DiscardHandler))
			s.ports[server.Port()] = true
			s.segment(tcp4(client, server, 100, syn, ""), false, false)
			c := s.conns[flowKey{client, server}]
			if c == nil {
				t.Fatal("the SYN opened no copy")
			}
			tc.run(s)
			s.mu.Lock()
			left := s.conns[flowKey{client, server}]
			s.mu.Unlock()
			if left != nil {
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

// A copy ends with the server's reset (the client sends none), and a new
// SYN on an address pair whose end went unseen starts a new copy; a
// retransmitted SYN does not.
func TestSniffConnectionEnds(t *testing.T) {
	const syn, rst = 0x02, 0x04
	client, server := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:8080")
	key := flowKey{client, server}
	h := pipeHandoff{fakeSession("m"), make(chan net.Conn, 4)}
	tab := newTable()
	tab.add(server.Port(), &sub{sess: h, mode: protocol.ModeMirror}, false)
	s := newSniffer(context.Background(), hostPod{}, tab, slog.New(slog.DiscardHandler))
	s.ports[server.Port()] = true

	s.segment(tcp4(client, server, 100, syn, ""), false, false)
	s.segment(tcp4(client, server, 101, 0, "GET / HTTP/1.1\r\n"), false, false)
	s.segment(tcp4(server, client, 7000, rst, ""), false, true)
	if s.conns[key] != nil {
		t.Fatal("the server's reset did not end the copy")
	}

	s.segment(tcp4(client, server, 200, syn, ""), false, false)
	first := s.conns[key]
	s.segment(tcp4(client, server, 200, syn, ""), false, false) // retransmitted
	if s.conns[key] != first || first == nil {
		t.Fatal("a retransmitted SYN replaced the copy")
	}
	s.segment(tcp4(client, server, 5000, syn, ""), false, false) // the pair again, after an unseen end
	second := s.conns[key]
	if second == first || second == nil || second.next != 5001 {
		t.Fatalf("a new connection on the same address pair: copy %p (next %d), first %p", second, second.next, first)
	}
	s.segment(tcp4(client, server, 5001, 0, "hi"), false, false)
	if second.next != 5003 {
		t.Errorf("the new connection's bytes were not taken: next %d", second.next)
	}
}
