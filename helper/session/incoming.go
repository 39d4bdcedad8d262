package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/protocol"
)

// IncomingRemote is a Remote that can take the target's incoming traffic.
type IncomingRemote interface {
	Subscribe(ctx context.Context, args protocol.SubscribeArgs) (protocol.SubscribeResult, error)
	Unsubscribe(ctx context.Context, port uint16) error
	ServeIncoming(f protocol.IncomingFunc, onAbort func(protocol.IncomingHeader))
}

// Pauser is an IncomingRemote that can tell the agent the local process
// is paused in a debugger (*protocol.Client and *Reconnecting are).
type Pauser interface {
	Pause(ctx context.Context, paused bool) error
}

// SetPaused says the local process stopped in a debugger (or runs again).
// The session itself never depends on it (keepalives are the helper's).
// With incoming mode steal and on_pause "cluster" (the default), the agent
// sends new connections of the session's unfiltered steals to the target
// while paused; it reports whether the agent was told.
func (s *Session) SetPaused(ctx context.Context, paused bool) (bool, error) {
	inc := &s.cfg.Feature.Network.Incoming
	if s.in == nil || inc.Mode != config.IncomingSteal || inc.OnPause == config.OnPauseLocal {
		return false, nil
	}
	p, ok := s.remote.(Pauser)
	if !ok {
		return false, nil
	}
	if err := p.Pause(ctx, paused); err != nil {
		var re *protocol.RemoteError
		if errors.As(err, &re) && re.Code == protocol.CodeUnknownOp {
			return false, fmt.Errorf("the agent is older than this doppel and keeps stealing while the debuggee is paused: %w", err)
		}
		return false, err
	}
	return true, nil
}

// Notice is something the user should hear about incoming traffic.
type Notice struct {
	Port    uint16
	Message string
	// Fatal: the session can't do what the config asks (a conflicting
	// steal with on_concurrent_steal "abort"); the run should stop.
	Fatal bool
}

// incoming subscribes the local process's listening ports on the agent
// and connects what the agent hands over to them.
type incoming struct {
	cfg      *config.IncomingConfig
	remote   IncomingRemote
	notify   func(Notice)
	probes   []uint16
	dialer   net.Dialer
	mu       sync.Mutex
	local    map[uint16]netip.AddrPort // target port -> where the local process listens
	dropped  map[uint16]int
	lastWarn time.Time
}

func newIncoming(cfg *config.IncomingConfig, remote IncomingRemote, probes []uint16, notify func(Notice)) *incoming {
	if notify == nil {
		notify = func(Notice) {}
	}
	in := &incoming{cfg: cfg, remote: remote, notify: notify, probes: probes,
		local: map[uint16]netip.AddrPort{}, dropped: map[uint16]int{}}
	go remote.ServeIncoming(in.open, in.aborted)
	return in
}

// listening subscribes the target port a new local listener stands for.
func (in *incoming) listening(lp ListenPort) {
	if lp.Proto != "tcp" {
		return
	}
	// A port the kernel chose (a debugger's inspector, a test server on
	// port 0): nothing in the cluster would know it.
	if lp.Requested.Port() == 0 {
		return
	}
	if in.cfg.IgnoreLocalhost && lp.Requested.Addr().IsLoopback() {
		return
	}
	remote := in.cfg.RemotePort(lp.Requested.Port())
	if !in.cfg.Subscribes(remote) {
		return
	}
	in.mu.Lock()
	in.local[remote] = dialable(lp.Actual)
	in.mu.Unlock()
	go in.subscribe(remote)
}

// dialable is where to reach a listener: its own address, or loopback
// for a wildcard one.
func dialable(ap netip.AddrPort) netip.AddrPort {
	switch {
	case ap.Addr().Is4() && ap.Addr().IsUnspecified():
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())
	case ap.Addr().IsUnspecified():
		return netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
	}
	return ap
}

func (in *incoming) args(port uint16) protocol.SubscribeArgs {
	args := protocol.SubscribeArgs{Port: port, Mode: string(in.cfg.Mode), Flush: in.cfg.Flush(),
		Override: in.cfg.OnConcurrentSteal == config.ConcurrentStealOverride}
	f := &in.cfg.HTTPFilter
	if in.cfg.Mode == config.IncomingSteal && f.IsSet() && (f.Ports == nil || slices.Contains(f.Ports, config.Port(port))) {
		args.Filter = wireFilter(f)
	}
	return args
}

func (in *incoming) subscribe(port uint16) {
	args := in.args(port)
	if args.Mode == protocol.ModeSteal && args.Filter == nil && slices.Contains(in.probes, port) {
		in.notify(Notice{Port: port, Message: fmt.Sprintf("stealing port %d without a filter takes the target's probe requests too: "+
			"the local process must answer them, or Kubernetes may restart the target or take it out of its Service; "+
			"add an http_filter, or ignore_ports: [%d]", port, port)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := in.remote.Subscribe(ctx, args)
	for _, w := range res.Warnings {
		in.notify(Notice{Port: port, Message: w})
	}
	var re *protocol.RemoteError
	switch {
	case err == nil:
		what := args.Mode
		if args.Filter != nil {
			what = "steal (filtered)"
		}
		in.notify(Notice{Port: port, Message: fmt.Sprintf("port %d of the target: %s", port, what)})
	case errors.As(err, &re) && re.Code == protocol.CodeConflict && in.cfg.OnConcurrentSteal == config.ConcurrentStealContinue:
		in.notify(Notice{Port: port, Message: re.Message + " — going on without port " + fmt.Sprint(port) + " (on_concurrent_steal: continue)"})
	case errors.As(err, &re) && re.Code == protocol.CodeConflict:
		in.notify(Notice{Port: port, Message: re.Message, Fatal: true})
	default:
		in.notify(Notice{Port: port, Message: fmt.Sprintf("port %d of the target can't be subscribed: %v", port, err)})
	}
}

// open reaches the local listener for an incoming stream.
func (in *incoming) open(ctx context.Context, hdr protocol.IncomingHeader) (net.Conn, error) {
	in.mu.Lock()
	dst, ok := in.local[hdr.Port]
	in.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no local listener for port %d", hdr.Port)
	}
	return in.dialer.DialContext(ctx, "tcp", dst.String())
}

// aborted hears of mirrored connections the agent gave up on.
func (in *incoming) aborted(hdr protocol.IncomingHeader) {
	var why string
	switch hdr.Reason {
	case protocol.ReasonMirrorOverflow:
		why = "the local process reads its copy too slowly (paused in a debugger?)"
	case protocol.ReasonMirrorIncomplete:
		why = "the agent could not capture all of their bytes (the node dropped segments under load)"
	default:
		return
	}
	in.mu.Lock()
	in.dropped[hdr.Port]++
	n := in.dropped[hdr.Port]
	warn := time.Since(in.lastWarn) > 10*time.Second
	if warn {
		in.lastWarn = time.Now()
	}
	in.mu.Unlock()
	if warn {
		in.notify(Notice{Port: hdr.Port, Message: fmt.Sprintf("port %d: %d mirrored connections dropped so far — %s; "+
			"the target's own traffic is not slowed down", hdr.Port, n, why)})
	}
}

func wireFilter(f *config.HTTPFilterConfig) *protocol.HTTPFilter {
	switch {
	case f.HeaderFilter != "":
		return &protocol.HTTPFilter{Header: f.HeaderFilter}
	case f.PathFilter != "":
		return &protocol.HTTPFilter{Path: f.PathFilter}
	case f.MethodFilter != "":
		return &protocol.HTTPFilter{Method: f.MethodFilter}
	case f.AllOf != nil:
		return &protocol.HTTPFilter{AllOf: wireRules(f.AllOf)}
	case f.AnyOf != nil:
		return &protocol.HTTPFilter{AnyOf: wireRules(f.AnyOf)}
	}
	return nil
}

func wireRules(rules []config.HTTPFilterRule) []protocol.HTTPFilter {
	out := make([]protocol.HTTPFilter, 0, len(rules))
	for _, r := range rules {
		out = append(out, protocol.HTTPFilter{Header: r.Header, Path: r.Path, Method: r.Method})
	}
	return out
}
