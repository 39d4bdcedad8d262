package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/layer"
)

// Options are what a session is made from.
type Options struct {
	Config *config.Config
	// Remote is the connection to the agent serving the target.
	Remote Remote
	Log    *slog.Logger
	// Host describes the local program for the default file rules.
	Host config.HostPaths
	// OnListen, if set, is told about every port the local process tree
	// listens on (the incoming-traffic feature subscribes them).
	OnListen func(ListenPort)
	// ProbePorts are the target container's probe ports: an unfiltered
	// steal of one is warned about.
	ProbePorts []uint16
	// OnNotice hears what the user should know about incoming traffic.
	OnNotice func(Notice)
	// SkipListen, if set, keeps a listening port from being subscribed
	// (the IDE's debugger ports).
	SkipListen func(ListenPort) bool
}

// ListenPort is a port the local process listens on.
type ListenPort struct {
	PID       int
	Proto     string // "tcp" or "udp"
	Requested netip.AddrPort
	Actual    netip.AddrPort
}

// Session is one run against one target.
type Session struct {
	cfg    *config.Config
	remote Remote
	log    *slog.Logger
	rules  *config.FileRules

	tunnel    *tunnel
	reachable *reachableSet // TCP destinations the pod reached lately
	names     *nameTable
	dns       *dnsResponder
	files     *remoteFiles
	tmp       string

	remoteEnv map[string]string
	hostname  string
	onListen  func(ListenPort)
	skip      func(ListenPort) bool
	in        *incoming // nil when incoming traffic is off

	mu        sync.Mutex
	listening []ListenPort
	relays    map[relayKey]*udpRelay
}

type relayKey struct {
	local, dst netip.AddrPort
}

// New starts a session: it reads the target's environment and hostname and
// starts the local tunnel and DNS responder. The agent must be reachable:
// a failure here is reported before the local program starts.
func New(ctx context.Context, opts Options) (*Session, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Session{cfg: opts.Config, remote: opts.Remote, log: opts.Log, names: newNameTable(),
		onListen: opts.OnListen, skip: opts.SkipListen, relays: map[relayKey]*udpRelay{}, reachable: newReachableSet()}
	env, err := opts.Remote.Env(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the target's environment: %w", err)
	}
	s.remoteEnv = map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			s.remoteEnv[k] = v
		}
	}
	if s.cfg.Feature.Hostname {
		if s.hostname, err = opts.Remote.Hostname(ctx); err != nil {
			return nil, fmt.Errorf("read the target's hostname: %w", err)
		}
	}
	if s.tmp, err = os.MkdirTemp("", "doppel-session-"); err != nil {
		return nil, err
	}
	host := opts.Host
	if host.TempDir == "" {
		host.TempDir = os.TempDir()
	}
	s.rules = s.cfg.Feature.FS.Rules(host)
	s.files = newRemoteFiles(opts.Remote, s.tmp)
	s.files.rewrite["/etc/resolv.conf"] = withUseVC
	if s.tunnel, err = newTunnel(s.log.With("part", "tunnel")); err != nil {
		s.Close()
		return nil, err
	}
	if inc := &s.cfg.Feature.Network.Incoming; inc.Mode != config.IncomingOff {
		if ir, ok := opts.Remote.(IncomingRemote); ok {
			s.in = newIncoming(inc, ir, opts.ProbePorts, opts.OnNotice)
		}
	}
	local := func(ctx context.Context, q []byte) ([]byte, error) { return localExchange(ctx, q) }
	s.dns, err = newDNSResponder(s.log.With("part", "dns"), opts.Remote.DNS, local,
		func(name string) bool { return s.cfg.Feature.Network.DNSRoute(name) == config.RouteLocal }, s.names)
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Env is the environment for the local process: the local one with the
// target's variables on top, as the env feature says.
func (s *Session) Env(local []string) []string {
	return s.cfg.Feature.Env.Filter(s.remoteEnv, local)
}

// Listening returns the ports the local process tree listens on.
func (s *Session) Listening() []ListenPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ListenPort(nil), s.listening...)
}

// Handler is the session's answer to the layer.
func (s *Session) Handler() layer.Handler { return (*handler)(s) }

// Close ends the session's local parts (not the agent connection, which
// the caller owns).
func (s *Session) Close() error {
	var errs []error
	if s.tunnel != nil {
		errs = append(errs, s.tunnel.Close())
	}
	if s.dns != nil {
		errs = append(errs, s.dns.Close())
	}
	s.mu.Lock()
	relays := s.relays
	s.relays = map[relayKey]*udpRelay{}
	s.mu.Unlock()
	for _, r := range relays {
		r.Close()
	}
	if s.tmp != "" {
		errs = append(errs, os.RemoveAll(s.tmp))
	}
	return errors.Join(errs...)
}

// localExchange resolves a query with the local machine's first name
// server, for names the DNS filter keeps local.
func localExchange(ctx context.Context, query []byte) ([]byte, error) {
	conf, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(conf), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "udp", net.JoinHostPort(f[1], "53"))
		if err != nil {
			return nil, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(query); err != nil {
			return nil, err
		}
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return nil, errors.New("no local name server in /etc/resolv.conf")
}
