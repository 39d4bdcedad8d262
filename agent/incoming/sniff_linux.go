package incoming

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/protocol"
)

// sniffer mirrors the ports that only mirroring sessions subscribe without
// being in their path: a packet socket in the target's network namespace
// sees each inbound TCP segment to those ports (on every interface,
// loopback included), and the agent reassembles each connection's client
// bytes and hands them to the mirrors. The original server's connections
// are the kernel's alone: a slow, paused or dead agent can't slow them.
// Connections are mirrored from their SYN; a port that gets a steal
// subscription goes back to the redirect, and its connections opened
// before go on being mirrored from here.
type sniffer struct {
	pod   Pod
	table *table
	log   *slog.Logger
	ctx   context.Context

	mu    sync.Mutex
	fd    int      // for the filter; -1 when closed
	file  *os.File // fd in Go's netpoller: read and Close
	ring  *packetRing
	ports map[uint16]bool
	conns map[flowKey]*sniffConn
}

// flowKey is a connection, client side first.
type flowKey struct{ src, dst netip.AddrPort }

// sniffConn is one mirrored connection: the next client byte expected,
// segments that came early, and a sink per mirroring session.
type sniffConn struct {
	isn     uint32 // the SYN's sequence number
	next    uint32
	early   map[uint32][]byte // by sequence number
	earlyN  int
	finAt   uint32
	lost    bool // a segment was cut short: the copy can't be whole
	fin     bool
	finWait bool // a timer ends the copy if the bytes before the FIN never come
	sinks   []*mirrorSink
	touched time.Time
}

// noPacketRing makes the capture receive segment by segment, as on a
// kernel without TPACKET_V3 (tests).
var noPacketRing = false

var errRingOff = errors.New("packet ring turned off")

// maxEarly bounds the out-of-order bytes held for one connection; beyond,
// its copy is dropped.
const maxEarly = 1 << 20

// sniffIdle ends the copy of a connection nothing was seen of for so long
// (its FIN or RST was missed).
const sniffIdle = 10 * time.Minute

// sniffFinGrace is how long the bytes before a FIN may still come (a
// retransmission) before the copy ends, incomplete.
var sniffFinGrace = 2 * time.Second

func newSniffer(ctx context.Context, pod Pod, t *table, log *slog.Logger) *sniffer {
	return &sniffer{pod: pod, table: t, log: log, ctx: ctx, fd: -1, ports: map[uint16]bool{}, conns: map[flowKey]*sniffConn{}}
}

// add starts mirroring new connections to port.
func (s *sniffer) add(port uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ports[port] {
		return nil
	}
	opened := false
	if s.fd < 0 {
		fd, err := s.pod.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		ring, err := (*packetRing)(nil), errRingOff
		if !noPacketRing {
			ring, err = newPacketRing(fd)
		}
		if err != nil {
			// A kernel without TPACKET_V3 rings: segments are received one
			// by one, on a fresh socket (the first may hold half a ring).
			// Bursts must not overflow its buffer: what is lost is a
			// mirror's copy.
			s.log.Debug("mirror capture without a packet ring", "err", err)
			unix.Close(fd)
			if fd, err = s.pod.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ALL))); err != nil {
				return err
			}
			if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
				unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
			}
		}
		// Read through the netpoller, draining what is queued at each
		// wake-up: a blocking recvfrom per segment cost a thread switch
		// each (a quarter of the CPU at 2,000 segments a second).
		if err := unix.SetNonblock(fd, true); err != nil {
			if ring != nil {
				ring.close()
			}
			unix.Close(fd)
			return err
		}
		s.fd, s.file, s.ring = fd, os.NewFile(uintptr(fd), "doppel-mirror-capture"), ring
		opened = true
	}
	s.ports[port] = true
	if err := s.refilterLocked(); err != nil {
		delete(s.ports, port)
		if opened {
			ring := s.ring
			s.closeLocked()
			if ring != nil {
				ring.close() // no reader started; its mapping holds the socket open
			}
		}
		return err
	}
	if opened {
		if s.ring != nil {
			go s.readRing(s.file, s.ring)
		} else {
			go s.read(s.file)
		}
		go s.sweep()
	}
	return nil
}

// remove stops mirroring new connections to port; those being mirrored go
// on until they end.
func (s *sniffer) remove(port uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ports[port] {
		return
	}
	delete(s.ports, port)
	if len(s.ports) == 0 && len(s.conns) == 0 && s.fd >= 0 {
		s.closeLocked() // ends read
		return
	}
	s.refilterLocked()
}

// refilterLocked passes the subscribed ports and those of the connections
// still being mirrored (a port gone back to the redirect keeps its copies
// until they end).
func (s *sniffer) refilterLocked() error {
	ports := make(map[uint16]bool, len(s.ports))
	for p := range s.ports {
		ports[p] = true
	}
	for k := range s.conns {
		ports[k.dst.Port()] = true
	}
	return s.filterLocked(ports)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// read receives segments until the socket is closed.
func (s *sniffer) read(f *os.File) {
	raw, err := f.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 1<<16)
	for {
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			for {
				n, from, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT|unix.MSG_TRUNC)
				switch {
				case err == unix.EAGAIN || err == unix.EWOULDBLOCK:
					return false // wait in the netpoller
				case err == unix.EINTR:
					continue
				case err != nil:
					rerr = err
					return true
				}
				ll, ok := from.(*unix.SockaddrLinklayer)
				out := ok && ll.Pkttype == unix.PACKET_OUTGOING
				s.segment(buf[:min(n, len(buf))], n > len(buf), out) // MSG_TRUNC: n is the whole length
			}
		})
		if err != nil || rerr != nil {
			return // closed
		}
	}
}

// readRing takes the blocks of segments the kernel fills until the
// socket is closed, then unmaps the ring.
func (s *sniffer) readRing(f *os.File, ring *packetRing) {
	defer ring.close()
	raw, err := f.SyscallConn()
	if err != nil {
		return
	}
	take := func(pkt []byte, pkttype uint8, truncated bool) {
		s.segment(pkt, truncated, pkttype == unix.PACKET_OUTGOING)
	}
	for {
		// The socket polls readable while a block waits for the agent.
		err := raw.Read(func(uintptr) bool {
			ring.drain(take)
			return false
		})
		if err != nil {
			return // closed
		}
	}
}

// segment handles one captured IP packet; truncated: b is only its start
// (the copy of its connection can't be whole). An outgoing packet is a
// reset from the server's side (the filter passes no other): it ends the
// copy, whose client bytes go no further.
func (s *sniffer) segment(b []byte, truncated, outgoing bool) {
	var src, dst netip.Addr
	var tcp []byte
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		ihl := int(b[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(b[2:]))
		if total > len(b) || total == 0 {
			total = len(b) // offloaded segments may say 0
		}
		if ihl < 20 || total < ihl+20 {
			return
		}
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		tcp = b[ihl:total]
	case len(b) >= 40 && b[0]>>4 == 6:
		plen := int(binary.BigEndian.Uint16(b[4:]))
		if plen == 0 || 40+plen > len(b) {
			plen = len(b) - 40
		}
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		tcp = b[40 : 40+plen]
	default:
		return
	}
	if len(tcp) < 20 {
		return
	}
	off := int(tcp[12]>>4) * 4
	if off < 20 || off > len(tcp) {
		return
	}
	key := flowKey{netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:])), netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:]))}
	seq := binary.BigEndian.Uint32(tcp[4:])
	flags := tcp[13]
	const fin, syn, rst, ack = 0x01, 0x02, 0x04, 0x10
	payload := tcp[off:]

	s.mu.Lock()
	if outgoing {
		if back := (flowKey{key.dst, key.src}); flags&rst != 0 && s.conns[back] != nil {
			s.endLocked(back, s.conns[back])
		}
		s.mu.Unlock()
		return
	}
	c := s.conns[key]
	if flags&syn != 0 && flags&ack == 0 {
		if c != nil && c.isn == seq || !s.ports[key.dst.Port()] {
			s.mu.Unlock()
			return // a retransmitted SYN, or a port back on the redirect
		}
		if c != nil {
			// The address pair's earlier connection ended unseen (its
			// FIN or RST lost): this is a new one.
			s.endLocked(key, c)
		}
		c = s.open(key)
		if c == nil {
			s.mu.Unlock()
			return
		}
		c.isn, c.next = seq, seq+1
		s.conns[key] = c
		s.mu.Unlock()
		return
	}
	if c == nil {
		s.mu.Unlock()
		return
	}
	c.touched = time.Now()
	if truncated {
		c.lost = true // bytes of it never reached the agent
	}
	if flags&rst != 0 || c.lost {
		s.endLocked(key, c)
		s.mu.Unlock()
		return
	}
	if len(payload) > 0 {
		c.accept(seq, payload)
	}
	if flags&fin != 0 {
		c.fin, c.finAt = true, seq+uint32(len(payload))
	}
	switch {
	case c.fin && c.next == c.finAt || c.earlyN > maxEarly:
		s.endLocked(key, c)
	case c.fin && !c.finWait:
		c.finWait = true
		time.AfterFunc(sniffFinGrace, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.conns[key] == c {
				s.endLocked(key, c)
			}
		})
	}
	s.mu.Unlock()
}

// open starts the copies of a new connection, one per mirroring session
// of its port; nil when the port has none any more.
func (s *sniffer) open(key flowKey) *sniffConn {
	r := s.table.route(key.dst.Port())
	if len(r.mirrors) == 0 {
		return nil
	}
	hdr := protocol.IncomingHeader{Port: key.dst.Port(), Remote: key.src.String(), Local: key.dst.String(), Mode: protocol.ModeMirror}
	c := &sniffConn{early: map[uint32][]byte{}, touched: time.Now()}
	for _, m := range r.mirrors {
		c.sinks = append(c.sinks, newMirrorSink(s.ctx, m.sess.(Handoff), hdr, s.log))
	}
	return c
}

// accept takes a segment's payload: in order it goes to the sinks (with
// whatever came early and now follows), a retransmission is trimmed,
// an early one waits.
func (c *sniffConn) accept(seq uint32, p []byte) {
	if d := int32(c.next - seq); d > 0 {
		if int(d) >= len(p) {
			return // all seen before
		}
		p, seq = p[d:], c.next
	}
	if seq != c.next {
		if _, ok := c.early[seq]; !ok {
			c.early[seq] = append([]byte(nil), p...)
			c.earlyN += len(p)
		}
		return
	}
	c.deliver(p)
	for {
		q, ok := c.early[c.next]
		if !ok {
			// An early segment may overlap what was just delivered.
			for at, b := range c.early {
				if d := int32(c.next - at); d > 0 {
					delete(c.early, at)
					c.earlyN -= len(b)
					if int(d) < len(b) {
						c.early[c.next] = b[d:]
						c.earlyN += len(b) - int(d)
					}
				}
			}
			if q, ok = c.early[c.next]; !ok {
				return
			}
		}
		delete(c.early, c.next)
		c.earlyN -= len(q)
		c.deliver(q)
	}
}

func (c *sniffConn) deliver(p []byte) {
	for _, k := range c.sinks {
		k.offer(p)
	}
	c.next += uint32(len(p))
}

func (s *sniffer) endLocked(key flowKey, c *sniffConn) {
	for _, k := range c.sinks {
		if c.lost || c.earlyN > maxEarly || len(c.early) > 0 || c.fin && c.next != c.finAt {
			k.drop(protocol.ReasonMirrorIncomplete) // bytes are missing: the copy is not the connection's
		}
		k.finish()
	}
	delete(s.conns, key)
	switch {
	case s.fd < 0:
	case len(s.ports) == 0 && len(s.conns) == 0:
		s.closeLocked()
	case !s.ports[key.dst.Port()]:
		s.refilterLocked() // its port may have no copies left
	}
}

// closeLocked closes the socket, asynchronously: it may be called from
// the read loop itself (the last connection ending), whose read holds
// the file until it returns.
func (s *sniffer) closeLocked() {
	go s.file.Close()
	s.fd, s.file, s.ring = -1, nil, nil // readRing unmaps the ring
}

// sweep ends the copies of connections gone quiet, until the socket is
// closed.
func (s *sniffer) sweep() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.fd < 0 {
			s.mu.Unlock()
			return
		}
		for k, c := range s.conns {
			if time.Since(c.touched) > sniffIdle {
				s.endLocked(k, c)
			}
		}
		s.mu.Unlock()
	}
}

// close stops everything.
func (s *sniffer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, c := range s.conns {
		s.endLocked(k, c)
	}
	if s.fd >= 0 {
		s.closeLocked()
	}
}
