//go:build linux

package incoming

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/agent/incoming/h2"
	"github.com/doppel-dev/doppel/agent/incoming/http1"
	"github.com/doppel-dev/doppel/agent/incoming/redirect"
	"github.com/doppel-dev/doppel/agent/outgoing"
	"github.com/doppel-dev/doppel/protocol"
)

// Mark is the SO_MARK of the agent's passthrough connections: the
// redirect never takes them ("dppl").
const Mark = 0x6470706c

// Pod is the target's network namespace, as agent/target.Target offers it.
type Pod interface {
	Socket(domain, typ, proto int) (int, error)
	InNetns(f func() error) error
}

// Manager serves the target's incoming traffic: it is the agent's
// protocol.IncomingHandler. The redirect and its listener are set up at
// the first subscription and removed by Close (and by the kernel, when
// the agent dies).
type Manager struct {
	pod     Pod
	log     *slog.Logger
	backend string
	table   *table
	router  *router
	sniff   *sniffer // mirror-only ports; nil when mirrors use the redirect

	// placeMu serializes place: the redirect and the capture must end up as
	// the table is after the last change, not as a slower place read it.
	placeMu sync.Mutex

	mu     sync.Mutex
	ln     net.Listener
	red    redirect.Redirector
	ctx    context.Context
	cancel context.CancelFunc
}

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger
	// Backend forces redirect.BackendNftables or BackendIptables.
	Backend string
	// MirrorByRedirect mirrors through the redirect (the connection passes
	// through the agent, which copies it) even where only mirrors
	// subscribe a port; by default such ports are mirrored from captured
	// packets, out of the connections' path.
	MirrorByRedirect bool
}

// NewManager serves pod's incoming traffic.
func NewManager(pod Pod, opts Options) *Manager {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{pod: pod, log: log, backend: opts.Backend, table: newTable(), ctx: ctx, cancel: cancel}
	if !opts.MirrorByRedirect {
		m.sniff = newSniffer(ctx, pod, m.table, log)
	}
	marked := &outgoing.Dialer{Socket: func(domain, typ, proto int) (int, error) {
		fd, err := pod.Socket(domain, typ, proto)
		if err == nil {
			if err = redirect.SetMark(fd, Mark); err != nil {
				unix.Close(fd)
				return -1, err
			}
		}
		return fd, err
	}}
	m.router = &router{
		table: m.table,
		dialOriginal: func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
			return marked.Dial(ctx, "tcp", dst.String())
		},
		pool: h2.NewPool(h2.PoolOptions{Logger: log}),
		lim:  http1.Limits{},
		log:  log,
	}
	return m
}

var _ protocol.IncomingHandler = (*Manager)(nil)

// handoff is a protocol session as the table sees it.
type handoff struct{ *protocol.SessionInfo }

func (h handoff) SessionID() string { return h.ID }
func (h handoff) Describe() string {
	who := h.Client.User
	if h.Client.Host != "" {
		who += "@" + h.Client.Host
	}
	if who == "" {
		who = "session " + h.ID
	}
	return fmt.Sprintf("%s, since %s", who, h.Started.UTC().Format("2006-01-02 15:04:05 UTC"))
}

// Subscribe implements protocol.IncomingHandler.
func (m *Manager) Subscribe(ctx context.Context, si *protocol.SessionInfo, args protocol.SubscribeArgs) (protocol.SubscribeResult, error) {
	var res protocol.SubscribeResult
	filter, err := compileRule(args.Filter)
	if err != nil {
		return res, &protocol.RemoteError{Code: protocol.CodeBadRequest, Errno: syscall.EINVAL, Message: err.Error()}
	}
	if err := m.start(); err != nil {
		return res, err
	}
	s := &sub{sess: handoff{si}, mode: args.Mode, filter: filter, since: time.Now()}
	_, overridden, undo, err := m.table.addUndoable(args.Port, s, args.Override)
	if err != nil {
		var ce *ConflictError
		if errors.As(err, &ce) {
			return res, &protocol.RemoteError{Code: protocol.CodeConflict, Errno: syscall.EADDRINUSE, Message: ce.Error()}
		}
		return res, err
	}
	if overridden != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("took port %d over from %s", args.Port, overridden.Describe()))
	}
	how, err := m.place(args.Port)
	if err != nil {
		// The subscriptions this one replaced (the session's own, an
		// overridden steal) still hold: the failure is this one's.
		undo()
		m.place(args.Port)
		return res, fmt.Errorf("redirect port %d: %w", args.Port, err)
	}
	if args.Flush {
		if n := m.router.closePort(args.Port); n > 0 {
			m.log.Info("reset connections the agent held so that they reconnect through the steal", "port", args.Port, "connections", n)
		}
		n, err := redirect.Flush(m.pod, args.Port, Mark)
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("existing connections to port %d were not reset: %v", args.Port, err))
		} else if n > 0 {
			m.log.Info("reset existing connections so that they reconnect through the steal", "port", args.Port, "connections", n)
		}
	}
	m.log.Info("port subscribed", "session", si.ID, "port", args.Port, "mode", args.Mode, "filtered", filter != nil, "via", how)
	return res, nil
}

// place puts port where its subscriptions need it: captured packets when
// only mirrors subscribe it, the redirect when a steal does, neither when
// nobody does. It says which.
func (m *Manager) place(port uint16) (string, error) {
	m.placeMu.Lock()
	defer m.placeMu.Unlock()
	mirrorOnly, any := m.table.mirrorOnly(port)
	m.mu.Lock()
	red := m.red
	m.mu.Unlock()
	switch {
	case !any:
		if m.sniff != nil {
			m.sniff.remove(port)
		}
		m.unredirect(port)
		return "none", nil
	case mirrorOnly && m.sniff != nil:
		err := m.sniff.add(port)
		if err == nil {
			m.unredirect(port)
			return "packet capture", nil
		}
		m.log.Warn("mirroring by packet capture failed: through the redirect instead", "port", port, "err", err)
	}
	if err := red.Add(port); err != nil {
		return "", err
	}
	if m.sniff != nil {
		m.sniff.remove(port)
	}
	return red.Backend(), nil
}

// Unsubscribe implements protocol.IncomingHandler.
func (m *Manager) Unsubscribe(_ context.Context, si *protocol.SessionInfo, port uint16) error {
	m.table.remove(port, si.ID)
	m.place(port)
	return nil
}

// Pause implements protocol.IncomingHandler: while a session is paused in
// a debugger, new connections of its unfiltered steals go to the pod's own
// server.
func (m *Manager) Pause(_ context.Context, si *protocol.SessionInfo, paused bool) error {
	m.table.setPaused(si.ID, paused)
	m.log.Info("session paused in a debugger", "session", si.ID, "paused", paused)
	return nil
}

// SessionGone implements protocol.IncomingHandler.
func (m *Manager) SessionGone(id string) {
	m.table.setPaused(id, false)
	for _, p := range m.table.removeSession(id) {
		m.place(p)
	}
	m.router.pool.ForgetPrefix("session " + id + " ")
}

func (m *Manager) unredirect(port uint16) {
	m.mu.Lock()
	red := m.red
	m.mu.Unlock()
	if red != nil {
		if err := red.Remove(port); err != nil {
			m.log.Warn("removing a redirect failed", "port", port, "err", err)
		}
	}
}

// start opens the listener and the redirect once.
func (m *Manager) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.red != nil {
		return nil
	}
	ln, err := m.listen()
	if err != nil {
		return fmt.Errorf("listen for redirected connections in the pod: %w", err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	red, err := redirect.New(m.pod, redirect.Options{ListenPort: port, Mark: Mark, Name: "doppel", Backend: m.backend, Logger: m.log})
	if err != nil {
		ln.Close()
		return fmt.Errorf("redirect the pod's traffic: %w", err)
	}
	m.ln, m.red = ln, red
	m.log.Info("redirecting incoming traffic", "backend", red.Backend(), "name", red.Name(), "listen_port", port)
	go m.accept(ln, port)
	return nil
}

// listen opens a dual-stack listener on a free port in the pod (IPv4 only
// where the pod has no IPv6).
func (m *Manager) listen() (net.Listener, error) {
	fd, err := m.pod.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0)
	var sa unix.Sockaddr = &unix.SockaddrInet6{}
	if err == nil {
		if err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		if fd, err = m.pod.Socket(unix.AF_INET, unix.SOCK_STREAM, 0); err != nil {
			return nil, err
		}
		sa = &unix.SockaddrInet4{}
	}
	f := os.NewFile(uintptr(fd), "redirect listener")
	defer f.Close()
	if err := unix.Bind(fd, sa); err != nil {
		return nil, os.NewSyscallError("bind", err)
	}
	if err := unix.Listen(fd, 1024); err != nil {
		return nil, os.NewSyscallError("listen", err)
	}
	return net.FileListener(f)
}

func (m *Manager) accept(ln net.Listener, own uint16) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
			// ENOMEM): the redirect stays, so giving up would black-hole
			// its ports. Wait and try again, as net/http's Server does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("accepting a redirected connection failed: retrying", "err", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		dst, err := redirect.OriginalDst(c)
		if err != nil || dst.Port() == own {
			// Not redirected: someone dialed the listener itself.
			c.Close()
			continue
		}
		boundUnacked(c)
		go m.router.serve(m.ctx, c, dst)
	}
}

// clientUserTimeout ends a redirected connection whose client has left
// what the agent sent unacknowledged this long (gone, or a zero window
// that never opens): the kernel's own bound is 15 min for the first and
// none for the second, and the connection holds a goroutine and the
// server's or the session's side meanwhile. A variable for tests.
var clientUserTimeout = 2 * time.Minute

// boundUnacked sets TCP_USER_TIMEOUT on a client's connection.
func boundUnacked(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(clientUserTimeout/time.Millisecond))
	})
}

// Close removes the redirect and ends every connection in progress.
func (m *Manager) Close() error {
	m.cancel()
	if m.sniff != nil {
		m.sniff.close()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var err error
	if m.red != nil {
		err = m.red.Close()
		m.ln.Close()
	}
	m.router.pool.Close()
	return err
}
