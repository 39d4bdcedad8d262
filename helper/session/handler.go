package session

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/layer"
)

// handler answers the layer for a session.
type handler Session

var (
	_ layer.Handler       = (*handler)(nil)
	_ layer.QuickConnects = (*handler)(nil)
)

func (h *handler) Skip(p layer.Process) bool {
	return h.cfg.SkipsProcess(p.Exe) || h.cfg.SkipsDebuggerHelper(p.Args) || (p.Exe != "" && p.Exe == selfExe())
}

// selfExe is doppel's own binary: its processes in a tree (`doppel wrap`,
// the launcher before it execs) are doppel's, not the program's.
var selfExe = sync.OnceValue(func() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return exe
})

// unclaimedTimeout closes a remote connection whose local socket never
// reached the tunnel (the process died between dial and connect).
const unclaimedTimeout = 30 * time.Second

func (h *handler) Connect(ctx context.Context, r layer.ConnectRequest) layer.ConnectVerdict {
	if v, ok := h.QuickConnect(ctx, r); ok {
		return v
	}
	if r.Proto == layer.TCP {
		return h.connectTCP(ctx, r)
	}
	return h.connectUDP(ctx, r)
}

// QuickConnect decides the connects that wait for nothing: the DNS
// responder, local routes, and early dials (early.go). The layer calls it
// on its receive loop.
func (h *handler) QuickConnect(ctx context.Context, r layer.ConnectRequest) (layer.ConnectVerdict, bool) {
	net := h.cfg.Feature.Network
	if r.Dst.Port() == 53 && net.DNS.Enabled {
		// Every name server the process was told about is the pod's, and
		// every query goes through the session's responder.
		return layer.ConnectVerdict{Action: layer.Redirect, Redirect: h.dns.Addr()}, true
	}
	proto := config.ProtocolTCP
	if r.Proto == layer.UDP {
		proto = config.ProtocolUDP
	}
	if net.OutgoingRoute(proto, r.Dst, h.names.Names(r.Dst.Addr())) == config.RouteLocal {
		return layer.ConnectVerdict{Action: layer.Passthrough}, true
	}
	if r.Proto == layer.TCP {
		return h.connectEarly(ctx, r.Dst)
	}
	return layer.ConnectVerdict{}, false
}

// connectTCP dials in the pod first, so the process sees the pod's answer
// (ECONNREFUSED stays ECONNREFUSED), then lets its socket connect to the
// tunnel, which splices it to the pod's connection.
func (h *handler) connectTCP(ctx context.Context, r layer.ConnectRequest) layer.ConnectVerdict {
	remote, err := h.remote.DialTCP(ctx, r.Dst.String())
	if err != nil {
		h.reachable.forget(r.Dst)
		h.log.Debug("outgoing tcp refused in the pod", "dst", r.Dst, "err", err)
		return layer.ConnectVerdict{Action: layer.Fail, Errno: errnoOf(err, syscall.ENETUNREACH)}
	}
	h.reachable.add(r.Dst)
	return h.redirectTCP(remote)
}

// redirectTCP connects the process's socket to the tunnel, which splices it
// to remote.
func (h *handler) redirectTCP(remote net.Conn) layer.ConnectVerdict {
	claimed := make(chan struct{})
	time.AfterFunc(unclaimedTimeout, func() {
		select {
		case <-claimed:
		default:
			remote.Close()
		}
	})
	return layer.ConnectVerdict{Action: layer.Redirect, Redirect: h.tunnel.Addr(), Connected: func(local netip.AddrPort) {
		close(claimed)
		h.tunnel.register(local, remote)
	}}
}

func (h *handler) connectUDP(ctx context.Context, r layer.ConnectRequest) layer.ConnectVerdict {
	key := relayKey{dst: r.Dst}
	if r.Call == layer.CallSendTo && r.Local.IsValid() {
		// Further datagrams of an unconnected socket reuse its relay.
		key.local = unmapAddrPort(r.Local)
		h.mu.Lock()
		relay, ok := h.relays[key]
		h.mu.Unlock()
		if ok {
			return layer.ConnectVerdict{Action: layer.Redirect, Redirect: relay.Addr()}
		}
	}
	// Relays of sockets the process closed since still hold agent streams.
	h.sweepRelays()
	remote, err := h.remote.DialUDP(ctx, r.Dst.String())
	if err != nil {
		return layer.ConnectVerdict{Action: layer.Fail, Errno: errnoOf(err, syscall.ENETUNREACH)}
	}
	var relay *udpRelay
	relay, err = newUDPRelay(h.log.With("part", "udp"), remote, defaultRelayIdle, func() {
		h.mu.Lock()
		for k, v := range h.relays {
			if v == relay {
				delete(h.relays, k)
			}
		}
		h.mu.Unlock()
	})
	if err != nil {
		remote.Close()
		return layer.ConnectVerdict{Action: layer.Fail, Errno: syscall.ENOBUFS}
	}
	return layer.ConnectVerdict{Action: layer.Redirect, Redirect: relay.Addr(), Connected: func(local netip.AddrPort) {
		relay.setPeer(local)
		h.mu.Lock()
		h.relays[relayKey{local: unmapAddrPort(local), dst: r.Dst}] = relay
		h.mu.Unlock()
	}}
}

// sweepRelays closes the relays whose process socket is gone, at once
// rather than at their next liveness check.
func (h *handler) sweepRelays() {
	h.mu.Lock()
	relays := make(map[*udpRelay]bool, len(h.relays))
	for _, r := range h.relays {
		relays[r] = true
	}
	h.mu.Unlock()
	for r := range relays {
		if r.peerGone() {
			r.Close()
		}
	}
}

func (h *handler) Listening(p layer.Process, proto layer.Proto, requested, actual netip.AddrPort) {
	lp := ListenPort{PID: p.PID, Proto: proto.String(), Requested: requested, Actual: actual}
	h.mu.Lock()
	h.listening = append(h.listening, lp)
	h.mu.Unlock()
	h.log.Info("local process listens", "pid", p.PID, "proto", lp.Proto, "port", requested.Port(), "actual", actual)
	if h.onListen != nil {
		h.onListen(lp)
	}
	if h.in != nil && (h.skip == nil || !h.skip(lp)) {
		h.in.listening(lp)
	}
}

const writeFlags = unix.O_WRONLY | unix.O_RDWR | unix.O_CREAT | unix.O_TRUNC | unix.O_APPEND

// decide says where a path goes, mapping our directory mirrors back to the
// pod paths they stand for.
func (h *handler) decide(path string, write bool) (config.FileDecision, string) {
	if remote, ok := h.files.remotePath(path); ok {
		return config.FileRemote, remote
	}
	if h.cfg.Feature.Hostname && path == "/proc/sys/kernel/hostname" {
		return config.FileRemote, path
	}
	return h.rules.Resolve(path, write)
}

func (h *handler) Open(ctx context.Context, p layer.Process, path string, flags int) layer.OpenVerdict {
	decision, path := h.decide(path, flags&writeFlags != 0)
	switch decision {
	case config.FileNotFound:
		return layer.OpenVerdict{Action: layer.FileErrno, Errno: syscall.ENOENT}
	case config.FileLocal:
		return layer.OpenVerdict{Action: layer.FilePassthrough}
	}
	if flags&writeFlags != 0 {
		// Remote writes (fs mode "write", read_write) are not carried yet.
		return layer.OpenVerdict{Action: layer.FileErrno, Errno: syscall.EROFS}
	}
	if h.cfg.Feature.Hostname && path == "/proc/sys/kernel/hostname" {
		f, err := memFile("hostname", []byte(h.hostname+"\n"))
		if err != nil {
			return layer.OpenVerdict{Action: layer.FileErrno, Errno: syscall.EIO}
		}
		return layer.OpenVerdict{Action: layer.FileServe, File: f}
	}
	f, errno := h.files.open(ctx, path)
	if errno != 0 {
		return layer.OpenVerdict{Action: layer.FileErrno, Errno: errno}
	}
	if flags&unix.O_DIRECTORY != 0 {
		if st, err := f.Stat(); err == nil && !st.IsDir() {
			f.Close()
			return layer.OpenVerdict{Action: layer.FileErrno, Errno: syscall.ENOTDIR}
		}
	}
	return layer.OpenVerdict{Action: layer.FileServe, File: f}
}

func (h *handler) Stat(ctx context.Context, p layer.Process, path string, follow bool) layer.StatVerdict {
	decision, path := h.decide(path, false)
	switch decision {
	case config.FileNotFound:
		return layer.StatVerdict{Action: layer.FileErrno, Errno: syscall.ENOENT}
	case config.FileLocal:
		return layer.StatVerdict{Action: layer.FilePassthrough}
	}
	if h.cfg.Feature.Hostname && path == "/proc/sys/kernel/hostname" {
		return layer.StatVerdict{Action: layer.FilePassthrough}
	}
	st, errno := h.files.stat(ctx, path, follow)
	if errno != 0 {
		return layer.StatVerdict{Action: layer.FileErrno, Errno: errno}
	}
	v := layer.StatVerdict{Action: layer.FileServe, Stat: st}
	if !follow && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		v.Link, _ = h.files.readlink(ctx, path)
	}
	return v
}

var _ layer.QuickFiles = (*handler)(nil)

// QuickFile decides local and not-found paths on the layer's receive loop:
// the rules are pure, and most of a program's opens are local.
func (h *handler) QuickFile(p layer.Process, path string, write bool) (layer.FileAction, syscall.Errno, bool) {
	decision, _ := h.decide(path, write)
	switch decision {
	case config.FileLocal:
		return layer.FilePassthrough, 0, true
	case config.FileNotFound:
		return layer.FileErrno, syscall.ENOENT, true
	}
	return 0, 0, false
}

var _ layer.HostnameProvider = (*handler)(nil)

var _ layer.ListenPorts = (*handler)(nil)

// Hostname is the pod's, for uname(2), when the hostname feature is on.
func (h *handler) Hostname() string {
	if !h.cfg.Feature.Hostname {
		return ""
	}
	return h.hostname
}

// LocalListenPort implements layer.ListenPorts: listen_ports.
func (h *handler) LocalListenPort(_ layer.Process, requested uint16) uint16 {
	for _, m := range h.cfg.Feature.Network.Incoming.ListenPorts {
		if uint16(m[0]) == requested {
			return uint16(m[1])
		}
	}
	return 0
}
