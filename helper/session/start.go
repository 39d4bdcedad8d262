package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"time"

	"github.com/google/uuid"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/helper/kube"
	"github.com/doppel-dev/doppel/internal/buildinfo"
	"github.com/doppel-dev/doppel/layer"
	"github.com/doppel-dev/doppel/layer/seccomp"
	"github.com/doppel-dev/doppel/protocol"
)

// StartOptions are what Start needs: the service layer under both front
// ends, `doppel exec` and `doppel ide`.
type StartOptions struct {
	Config *config.Config
	// Kube says which cluster (kubectl's flags over the config's keys).
	Kube kube.Options
	// ID is the session's id with the agent; "" makes a new one.
	ID string
	// AgentAddress and AgentToken: connect to an agent started by hand
	// (`doppel-agent serve`) instead of starting one (development, tests).
	AgentAddress, AgentToken string
	Log                      *slog.Logger
	// Progress hears each step of the start ("creating agent job").
	Progress func(step string)
	// OnState hears the transport's "reconnecting", "ready" and "ended"
	// after the start; reason says why (for "ended", with the agent's state).
	OnState func(state, reason string)
	// Host describes the local program for the default file rules; Start
	// adds the target's application paths.
	Host config.HostPaths
	// OnListen, OnNotice and SkipListen are Options'.
	OnListen   func(ListenPort)
	OnNotice   func(Notice)
	SkipListen func(ListenPort) bool
}

// Run is a started session with its agent connection and the supervisor
// of the local process trees it intercepts.
type Run struct {
	*Session
	ID string
	// Supervisor answers the trapped calls of every process tree started
	// under Filter (launcher.Start) or handed over by libdoppel.so.
	Supervisor *layer.Supervisor
	Filter     seccomp.Options
	// Target is the resolved target; nil with an agent address.
	Target *kube.Target
	// Warnings about this machine's kernel.
	Warnings []string

	remote interface {
		Remote
		Close() error
	}
	cancel context.CancelFunc
	pause  *Pause // the session's pause of the target (pause.go), nil if none
}

// Start checks that this machine can intercept programs, starts (or joins)
// the target's agent, connects to it and starts the session. The connection
// reconnects by itself after a drop, for as long as the run lives. Errors
// keep their category: *config.Error, *kube.Error, or others.
func Start(ctx context.Context, opts StartOptions) (*Run, error) {
	cfg := opts.Config
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Progress == nil {
		opts.Progress = func(string) {}
	}
	if opts.ID == "" {
		opts.ID = uuid.NewString()
	}
	r := &Run{ID: opts.ID, Filter: seccomp.Options{UDP: cfg.Feature.Network.Outgoing.UDP,
		Files: cfg.Feature.FS.Mode != config.FSLocal, Hostname: cfg.Feature.Hostname}}
	warnings, err := seccomp.CheckKernel(r.Filter)
	if err != nil {
		return nil, fmt.Errorf("doppel cannot intercept programs on this machine: %w", err)
	}
	r.Warnings = warnings
	// The connection outlives the start's ctx: it ends with Close.
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	host := opts.Host
	var probePorts []uint16
	if opts.AgentAddress != "" {
		r.remote, err = ConnectAgent(ctx, opts.AgentAddress, opts.AgentToken, opts.ID)
	} else {
		var rc *Reconnecting
		rc, r.Target, r.pause, err = startCluster(ctx, life, opts)
		if rc != nil {
			r.remote = rc
		}
		if r.Target != nil {
			host.TargetAppPaths = append(r.Target.Mounts, r.Target.WorkingDir)
			for _, p := range r.Target.ProbePorts {
				probePorts = append(probePorts, uint16(p))
			}
		}
	}
	if err != nil {
		cancel()
		return nil, err
	}
	r.Session, err = New(ctx, Options{Config: cfg, Remote: r.remote, Log: opts.Log, Host: host,
		OnListen: opts.OnListen, ProbePorts: probePorts, OnNotice: opts.OnNotice, SkipListen: opts.SkipListen})
	if err != nil {
		r.pause.End(ctx)
		r.remote.Close()
		cancel()
		return nil, err
	}
	r.Supervisor = layer.NewSupervisor(r.Session.Handler(), layer.Options{Filter: r.Filter, Log: opts.Log.With("part", "layer")})
	return r, nil
}

// Close ends the supervisor (end the process trees first), the session's
// local parts and the session with the agent.
func (r *Run) Close() error {
	errs := []error{r.Supervisor.Close(), r.Session.Close(), r.pause.End(context.Background()), r.remote.Close()}
	r.cancel()
	return errors.Join(errs...)
}

// ResumeGrace is how long a session keeps redialling a dropped
// port-forward before giving up; the agent keeps the session as long
// (protocol.Server ResumeGrace).
const ResumeGrace = protocol.DefaultResumeGrace

// ClientInfo says who connects, for the agent's logs.
func ClientInfo() protocol.ClientInfo {
	info := protocol.ClientInfo{Version: buildinfo.Get().Version, PID: os.Getpid()}
	if u, err := user.Current(); err == nil {
		info.User = u.Username
	}
	info.Host, _ = os.Hostname()
	return info
}

// ConnectAgent opens a session with an agent at address, failing before
// the command starts when the agent cannot be reached.
func ConnectAgent(ctx context.Context, address, token, id string) (*protocol.Client, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the agent at %s: %w", address, err)
	}
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if id == "" {
		id = uuid.NewString()
	}
	client, err := protocol.Dial(hctx, conn, protocol.Hello{SessionID: id, Token: token, Client: ClientInfo()})
	if err != nil {
		return nil, fmt.Errorf("agent at %s: %w", address, err)
	}
	client.SetBulk(func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", address) }, 0)
	return client, nil
}

// startCluster resolves the config's target, starts (or joins) its agent
// and connects to it through a port-forward; the returned Remote
// reconnects by itself after a drop until life ends.
func startCluster(ctx, life context.Context, opts StartOptions) (_ *Reconnecting, _ *kube.Target, _ *Pause, err error) {
	cfg, progress := opts.Config, opts.Progress
	if cfg.Target.Path.IsZero() {
		return nil, nil, nil, &config.Error{KeyPath: "target", Code: config.CodeValue,
			Message: "no target: set target in .doppel/config.yaml or pass --target (for example --target deployment/backend), or --target targetless"}
	}
	kc, err := kube.New(opts.Kube)
	if err != nil {
		return nil, nil, nil, err
	}
	ns := cfg.Target.Namespace
	if opts.Kube.Namespace != "" {
		ns = opts.Kube.Namespace
	}
	start := time.Now()
	progress(fmt.Sprintf("resolving %s", cfg.Target.Path))
	target, err := ResolveTarget(ctx, kc, cfg, ns)
	if err != nil {
		return nil, nil, nil, err
	}
	who, err := kc.Username(ctx)
	if err != nil {
		opts.Log.Warn("cannot tell who I am to the cluster", "err", err)
	}
	// Pause (docs/pause.md): stale leases end; a copy may replace the target.
	// pause is not a named result: the error returns below give nil for
	// it, and the deferred End must still see the one that began.
	var pause *Pause
	if target, pause, err = PrepareTarget(ctx, kc, cfg, target, opts.ID, who, opts.Kube, progress); err != nil {
		return nil, nil, nil, err
	}
	defer func() {
		if err != nil {
			pause.End(context.WithoutCancel(ctx))
		}
	}()
	token := kc.SessionToken(target)
	hello := protocol.Hello{SessionID: opts.ID, Token: token, Client: ClientInfo()}
	agent, err := kc.StartAgent(ctx, kube.AgentOptions{
		Target: target, Config: cfg.Agent, TokenHash: protocol.HashToken(token), User: who, Session: opts.ID,
		LogLevel: string(cfg.Doppel.LogLevel),
		Progress: func(p kube.Progress) { progress(p.Step) },
		Hello:    &hello,
	})
	if err != nil {
		return nil, target, nil, err
	}
	client, err := agent.Connect(ctx, hello)
	if err != nil {
		return nil, target, nil, fmt.Errorf("connect to the agent %s/%s: %w", agent.Namespace, agent.Pod, err)
	}
	progress(fmt.Sprintf("connected to %s (%.1fs)", target, time.Since(start).Seconds()))
	dial := func(ctx context.Context, resume bool) (*protocol.Client, error) {
		h := hello
		h.Resume = resume
		return agent.Connect(ctx, h)
	}
	r := NewReconnecting(client, dial, ResumeGrace, opts.Log.With("part", "transport"))
	r.OnState = func(state string, err error) {
		if state == "ended" && pause != nil {
			// The agent is gone for good: give the workload back now, not
			// when the local process ends.
			go pause.End(context.WithoutCancel(life))
		}
		if opts.OnState == nil {
			return
		}
		reason := ""
		if err != nil {
			reason = err.Error()
		}
		if state == "ended" {
			sctx, cancel := context.WithTimeout(life, 5*time.Second)
			defer cancel()
			reason = fmt.Sprintf("%s: %s", reason, agent.State(sctx))
		}
		opts.OnState(state, reason)
	}
	go r.Watch(life)
	if err := pause.AfterConnect(ctx, cfg, target, r, opts.Kube); err != nil {
		r.Close()
		return nil, target, nil, err
	}
	return r, target, pause, nil
}
