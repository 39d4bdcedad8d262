package session

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/doppel-dev/doppel/internal/netpipe"
)

// tunnel is the loopback listener redirected TCP sockets are connected to.
// Each accepted connection is matched, by its source address, to the remote
// connection the agent dialled before the local connect was let through, and
// the two are spliced.
type tunnel struct {
	ln  net.Listener
	ln6 net.Listener // [::1] on ln's port, for IPV6_V6ONLY sockets; nil without IPv6
	log *slog.Logger
	// claimTimeout bounds how long an accepted connection waits for its
	// remote half to be registered (they race by design: the kernel may
	// queue the connection before the layer reports its local address).
	claimTimeout atomic.Int64 // a time.Duration; tests shorten it while the accept loop runs
	// pendingTimeout bounds how long a registered remote half waits for
	// its accepted connection.
	pendingTimeout time.Duration

	mu      sync.Mutex
	pending map[netip.AddrPort]*pendingConn
	waiters map[netip.AddrPort]chan *pendingConn
	closed  bool
}

type pendingConn struct {
	remote net.Conn
	added  time.Time
}

const defaultClaimTimeout = 10 * time.Second

func newTunnel(log *slog.Logger) (*tunnel, error) {
	ln, ln6, err := listenLoopbacks()
	if err != nil {
		return nil, err
	}
	t := &tunnel{ln: ln, ln6: ln6, log: log, pendingTimeout: unclaimedTimeout, pending: map[netip.AddrPort]*pendingConn{}, waiters: map[netip.AddrPort]chan *pendingConn{}}
	t.claimTimeout.Store(int64(defaultClaimTimeout))
	go t.acceptLoop(ln)
	if ln6 != nil {
		go t.acceptLoop(ln6)
	}
	return t, nil
}

// listenLoopbacks listens on 127.0.0.1 and on [::1] with the same port:
// the layer redirects an IPV6_V6ONLY socket, which can't reach 127.0.0.1,
// to [::1] on the tunnel's port. Without IPv6 on lo, only 127.0.0.1.
func listenLoopbacks() (net.Listener, net.Listener, error) {
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
		switch {
		case err == nil:
			return ln, ln6, nil
		case errors.Is(err, syscall.EADDRINUSE) && attempt < 10:
			ln.Close() // that port is taken on ::1: another one
		default:
			return ln, nil, nil
		}
	}
}

// Addr is where redirected sockets connect.
func (t *tunnel) Addr() netip.AddrPort { return t.ln.Addr().(*net.TCPAddr).AddrPort() }

// register files the remote half for the local socket whose address is
// local; a nil remote resets the local connection.
func (t *tunnel) register(local netip.AddrPort, remote net.Conn) {
	local = unmapAddrPort(local)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		closeRemote(remote)
		return
	}
	p := &pendingConn{remote: remote, added: time.Now()}
	if w, ok := t.waiters[local]; ok {
		delete(t.waiters, local)
		w <- p
		return
	}
	if old, ok := t.pending[local]; ok {
		closeRemote(old.remote) // a stale registration the kernel reused the port of
	}
	t.pending[local] = p
	// A registration nobody claims (the accepted connection gave up
	// waiting, or never came) must not keep its pod connection open.
	time.AfterFunc(t.pendingTimeout, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.pending[local] == p {
			delete(t.pending, local)
			closeRemote(p.remote)
		}
	})
}

// claim returns the remote half for an accepted connection from local.
func (t *tunnel) claim(ctx context.Context, local netip.AddrPort) (net.Conn, error) {
	t.mu.Lock()
	if p, ok := t.pending[local]; ok {
		delete(t.pending, local)
		t.mu.Unlock()
		return p.remote, nil
	}
	w := make(chan *pendingConn, 1)
	t.waiters[local] = w
	t.mu.Unlock()
	select {
	case p := <-w:
		return p.remote, nil
	case <-ctx.Done():
		t.mu.Lock()
		delete(t.waiters, local)
		t.mu.Unlock()
		select { // registered while we gave up
		case p := <-w:
			closeRemote(p.remote)
		default:
		}
		return nil, ctx.Err()
	}
}

func (t *tunnel) acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				t.log.Error("tunnel accept", "err", err)
			}
			return
		}
		go t.serve(c)
	}
}

func (t *tunnel) serve(local net.Conn) {
	from := local.RemoteAddr().(*net.TCPAddr).AddrPort()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(t.claimTimeout.Load()))
	remote, err := t.claim(ctx, unmapAddrPort(from))
	cancel()
	if err != nil {
		t.log.Warn("tunnel: a connection nobody redirected", "from", from)
		local.Close()
		return
	}
	if remote == nil {
		local.(*net.TCPConn).SetLinger(0) // close with RST
		local.Close()
		return
	}
	if e, ok := remote.(*earlyConn); ok {
		e.local = local.(*net.TCPConn)
	}
	netpipe.Join(local, remote)
}

func closeRemote(c net.Conn) {
	if c != nil {
		c.Close()
	}
}

func (t *tunnel) Close() error {
	t.mu.Lock()
	t.closed = true
	for k, p := range t.pending {
		closeRemote(p.remote)
		delete(t.pending, k)
	}
	t.mu.Unlock()
	if t.ln6 != nil {
		t.ln6.Close()
	}
	return t.ln.Close()
}

func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
