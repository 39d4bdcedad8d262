package session

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/doppel-dev/doppel/layer"
	"github.com/doppel-dev/doppel/protocol"
)

// An early dial lets a connect return before the agent has answered: the
// process's socket connects to the tunnel at once, and its first bytes
// travel with the dial (protocol.Client.DialTCPEarly). That saves a round
// trip through the port-forward on every new connection, but the pod's
// refusal can then only arrive as a reset. So only destinations the pod
// reached within reachableTTL are dialed early; the first connection to a
// destination, and every one after a refusal, waits for the pod's answer
// and gets its errno (feature.network.outgoing.early_connect).

// reachableTTL is how long a destination the pod reached counts as
// reachable without a new connection confirming it.
const reachableTTL = 30 * time.Second

// maxReachable bounds the set; beyond it, expired entries are dropped.
const maxReachable = 4096

// earlyDialer is a Remote that can dial early (*protocol.Client and
// *Reconnecting).
type earlyDialer interface {
	DialTCPEarly(ctx context.Context, address string) (net.Conn, error)
}

// reachableSet holds the TCP destinations the pod reached lately.
type reachableSet struct {
	mu   sync.Mutex
	seen map[netip.AddrPort]time.Time
	now  func() time.Time
}

func newReachableSet() *reachableSet {
	return &reachableSet{seen: map[netip.AddrPort]time.Time{}, now: time.Now}
}

func (r *reachableSet) fresh(dst netip.AddrPort) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.seen[dst]
	return ok && r.now().Sub(t) < reachableTTL
}

func (r *reachableSet) add(dst netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if _, ok := r.seen[dst]; !ok && len(r.seen) >= maxReachable {
		for d, t := range r.seen {
			if now.Sub(t) >= reachableTTL {
				delete(r.seen, d)
			}
		}
		if len(r.seen) >= maxReachable {
			return
		}
	}
	r.seen[dst] = now
}

func (r *reachableSet) forget(dst netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.seen, dst)
}

// connectEarly connects the process's socket to the tunnel at once if the
// config allows early dials and the pod reached dst lately, dialing
// meanwhile, and registers the dial with the tunnel once the socket is
// connected; decided is false when the caller should dial and wait. It
// waits for nothing, so the layer runs it on its receive loop.
func (h *handler) connectEarly(ctx context.Context, dst netip.AddrPort) (v layer.ConnectVerdict, decided bool) {
	ed, can := h.remote.(earlyDialer)
	if !can || !h.cfg.Feature.Network.Outgoing.EarlyConnect || !h.reachable.fresh(dst) {
		return v, false
	}
	// The dial starts now, while the layer connects the process's socket:
	// the agent gets a head start on its own connect.
	type dialed struct {
		conn net.Conn
		err  error
	}
	result := make(chan dialed, 1)
	go func() {
		conn, err := ed.DialTCPEarly(ctx, dst.String())
		result <- dialed{conn, err}
	}()
	connected := make(chan netip.AddrPort, 1)
	go func() {
		d := <-result
		var local netip.AddrPort
		select {
		case local = <-connected:
		case <-time.After(connectedWait):
			// The process's socket never connected to the tunnel.
			if d.conn != nil {
				d.conn.Close()
			}
			return
		}
		if d.err != nil {
			// The session's trouble (the agent gone): the tunnel resets
			// the local connection.
			h.log.Debug("early dial", "dst", dst, "err", d.err)
			h.tunnel.register(local, nil)
			return
		}
		h.tunnel.register(local, &earlyConn{Conn: d.conn, dst: dst, reachable: h.reachable})
	}()
	return layer.ConnectVerdict{Action: layer.Redirect, Redirect: h.tunnel.Addr(),
		Connected: func(local netip.AddrPort) { connected <- local }}, true
}

// connectedWait bounds the wait for the layer's Connected call, which
// comes right after the process's connect or not at all (it failed).
const connectedWait = 10 * time.Second

// earlyConn is an early dial's connection. Its first Read brings the pod's
// answer: a refusal resets the local socket (the tunnel sets local), so the
// process sees ECONNRESET rather than an orderly end, and the destination
// is dialed the waiting way next time.
type earlyConn struct {
	net.Conn
	dst       netip.AddrPort
	reachable *reachableSet
	local     *net.TCPConn

	answered bool // only Join's one reader touches it
}

func (c *earlyConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if !c.answered {
		c.answered = true
		if err != nil && protocol.DialFailed(err) {
			c.reachable.forget(c.dst)
			if c.local != nil {
				c.local.SetLinger(0) // close with RST
			}
			return n, err
		}
		if err == nil || err == io.EOF {
			c.reachable.add(c.dst)
		}
	}
	return n, err
}

// CloseWrite passes the half-close on (netpipe.CloseWrite looks for it).
func (c *earlyConn) CloseWrite() error { return c.Conn.(interface{ CloseWrite() error }).CloseWrite() }
