package session

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// udpRelay carries one UDP flow of the local process to the pod: the layer
// points the process's socket at the relay's loopback address, the relay
// forwards each datagram over an agent datagram stream and sends the
// answers back to the socket it learned.
type udpRelay struct {
	conn   *net.UDPConn
	remote net.Conn // datagram-preserving: one Read/Write per datagram
	log    *slog.Logger
	idle   time.Duration

	mu     sync.Mutex
	peer   netip.AddrPort // the process's socket
	last   time.Time
	closed bool
	onDone func()
}

const defaultRelayIdle = 2 * time.Minute

func newUDPRelay(log *slog.Logger, remote net.Conn, idle time.Duration, onDone func()) (*udpRelay, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	r := &udpRelay{conn: conn, remote: remote, log: log, idle: idle, last: time.Now(), onDone: onDone}
	go r.fromProcess()
	go r.fromPod()
	go r.reapIdle()
	return r, nil
}

// Addr is where the process's socket sends.
func (r *udpRelay) Addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// setPeer records the process's socket address (from the layer). An
// unconnected socket bound to the wildcard address (0.0.0.0 or [::]) reports
// that address, but its datagrams to the relay come from loopback, where
// the relay listens: that is the peer to match and answer.
func (r *udpRelay) setPeer(p netip.AddrPort) {
	p = unmapAddrPort(p)
	if p.Addr().IsUnspecified() {
		p = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), p.Port())
	}
	r.mu.Lock()
	r.peer = p
	r.mu.Unlock()
}

func (r *udpRelay) touch() {
	r.mu.Lock()
	r.last = time.Now()
	r.mu.Unlock()
}

func (r *udpRelay) fromProcess() {
	buf := make([]byte, 65535)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			r.Close()
			return
		}
		r.mu.Lock()
		if !r.peer.IsValid() {
			r.peer = unmapAddrPort(from)
		}
		ok := r.peer == unmapAddrPort(from)
		r.mu.Unlock()
		if !ok {
			continue // only the socket this relay was made for may use it
		}
		r.touch()
		if _, err := r.remote.Write(buf[:n]); err != nil {
			r.Close()
			return
		}
	}
}

func (r *udpRelay) fromPod() {
	buf := make([]byte, 65535)
	for {
		n, err := r.remote.Read(buf)
		if err != nil {
			r.Close()
			return
		}
		r.touch()
		r.mu.Lock()
		peer := r.peer
		r.mu.Unlock()
		if peer.IsValid() {
			r.conn.WriteToUDPAddrPort(buf[:n], peer)
		}
	}
}

// relayLivenessEvery is how often a relay checks that the process's socket
// still exists.
const relayLivenessEvery = 2 * time.Second

// reapIdle closes the relay when its flow has been idle too long, or when
// the process's socket is gone: nothing tells a relay that the process
// closed its socket, and every relay holds one of the session's agent
// streams, of which the agent grants a bounded number (a program that opens
// and closes UDP sockets in a loop would otherwise run out of them, and then
// every connect would fail with EMFILE until the idle window passed).
func (r *udpRelay) reapIdle() {
	t := time.NewTicker(min(r.idle/4, relayLivenessEvery))
	defer t.Stop()
	for range t.C {
		r.mu.Lock()
		idle, closed := time.Since(r.last) > r.idle, r.closed
		r.mu.Unlock()
		if closed {
			return
		}
		if idle || r.peerGone() {
			r.Close()
			return
		}
	}
}

// peerGone reports whether the process's socket no longer exists: nobody
// holds its address any more, so binding it succeeds. (A socket bound to
// the wildcard address, or with SO_REUSEADDR, makes the bind fail: alive.)
func (r *udpRelay) peerGone() bool {
	r.mu.Lock()
	peer := r.peer
	r.mu.Unlock()
	if !peer.IsValid() || !peer.Addr().Is4() {
		return false
	}
	probe, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(peer))
	if err != nil {
		return false
	}
	probe.Close()
	return true
}

func (r *udpRelay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.conn.Close()
	r.remote.Close()
	if r.onDone != nil {
		r.onDone()
	}
	return nil
}
