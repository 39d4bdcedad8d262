package cli

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/google/uuid"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/helper/kube"
	"github.com/doppel-dev/doppel/helper/session"
	"github.com/doppel-dev/doppel/internal/buildinfo"
	"github.com/doppel-dev/doppel/protocol"
)

// resumeGrace is how long a session keeps redialling a dropped port-forward
// before giving up; the agent keeps the session as long (protocol.Server
// ResumeGrace).
const resumeGrace = protocol.DefaultResumeGrace

// clientInfo says who connects, for the agent's logs.
func clientInfo() protocol.ClientInfo {
	info := protocol.ClientInfo{Version: buildinfo.Get().Version, PID: os.Getpid()}
	if u, err := user.Current(); err == nil {
		info.User = u.Username
	}
	info.Host, _ = os.Hostname()
	return info
}

// startClusterSession resolves the config's target, starts (or joins) its
// agent and connects to it through a port-forward. Progress goes to
// progress. The returned Remote reconnects by itself after a drop.
func startClusterSession(ctx context.Context, deps Deps, cfg *config.Config, kf kubeFlags, progress func(string)) (*session.Reconnecting, *kube.Target, error) {
	if cfg.Target.Path.IsZero() {
		return nil, nil, fmt.Errorf("no target: set target in .doppel/config.yaml or pass --target (for example --target deployment/backend), or --target targetless")
	}
	kc, err := kube.New(kf.options(cfg))
	if err != nil {
		return nil, nil, err
	}
	ns := cfg.Target.Namespace
	if kf.namespace != "" {
		ns = kf.namespace
	}
	start := time.Now()
	progress(fmt.Sprintf("resolving %s", cfg.Target.Path))
	target, err := kc.Resolve(ctx, cfg.Target.Path, ns)
	if err != nil {
		return nil, nil, err
	}
	user, err := kc.Username(ctx)
	if err != nil {
		deps.Logger.Warn("cannot tell who I am to the cluster", "err", err)
	}
	token := kc.SessionToken(target)
	agent, err := kc.StartAgent(ctx, kube.AgentOptions{
		Target: target, Config: cfg.Agent, TokenHash: protocol.HashToken(token), User: user,
		Progress: func(p kube.Progress) { progress(p.Step) },
	})
	if err != nil {
		return nil, nil, err
	}
	hello := protocol.Hello{SessionID: uuid.NewString(), Token: token, Client: clientInfo()}
	client, err := agent.Connect(ctx, hello)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to the agent %s/%s: %w", agent.Namespace, agent.Pod, err)
	}
	progress(fmt.Sprintf("connected to %s (%.1fs)", target, time.Since(start).Seconds()))
	dial := func(ctx context.Context, resume bool) (*protocol.Client, error) {
		h := hello
		h.Resume = resume
		return agent.Connect(ctx, h)
	}
	r := session.NewReconnecting(client, dial, resumeGrace, deps.Logger.With("part", "transport"))
	r.OnState = func(state string, err error) {
		switch state {
		case "reconnecting":
			progress(fmt.Sprintf("lost the connection to the agent (%v): reconnecting", err))
		case "ready":
			progress("reconnected to the agent: the session goes on")
		case "ended":
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			progress(fmt.Sprintf("the session with the agent has ended (%v): %s. The local process keeps running, "+
				"but its connections, DNS and files through the cluster fail from now on; the target %s was not changed",
				err, agent.State(sctx), target))
		}
	}
	go r.Watch(ctx)
	return r, target, nil
}
