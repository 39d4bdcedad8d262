package session

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/helper/kube"
	"github.com/doppel-dev/doppel/protocol"
)

// Pause is a session's part in pausing the target (docs/pause.md): a
// freeze of the target container, or a copy pod with the workload scaled
// down. It holds leases on what it changed, renews them while the session
// lives and lets go at the end; a guardian process (this binary,
// re-executed) lets go for it if the helper dies.
type Pause struct {
	client  *kube.Client
	session string
	refs    []kube.ObjectRef
	hold    *kube.Hold
	remote  interface {
		Unfreeze(context.Context) (protocol.FreezeResult, error)
	}
	guardian *leaseGuardian
	progress func(string)

	endOnce sync.Once
	endErr  error
}

// PrepareTarget is the pause's first step, before the agent starts: it
// ends the stale leases of the namespace (a crashed session's frozen pod,
// scaled-down workload or copy pod), then, with feature.copy_target,
// replaces the target by its copy. It returns the target to use and the
// session's Pause (nil when the config asks for no pause).
func PrepareTarget(ctx context.Context, kc *kube.Client, cfg *config.Config, target *kube.Target, sessionID, user string, kopts kube.Options, progress func(string)) (*kube.Target, *Pause, error) {
	if cfg.Target.Path.Kind == config.TargetTargetless {
		return target, nil, nil
	}
	kube.ThawConfig = &cfg.Agent
	fixed, err := kc.ReconcileStale(ctx, target.Namespace)
	for _, f := range fixed {
		progress(fmt.Sprintf("a crashed session's %s lease on %s had expired: %s", f.Target, f.Name, f.Kind))
	}
	if err != nil {
		progress(fmt.Sprintf("warning: %v", err))
	}
	ct := cfg.Feature.CopyTarget
	if !ct.Enabled && !cfg.Pause {
		return target, nil, nil
	}
	p := &Pause{client: kc, session: sessionID, progress: progress}
	if ct.Enabled {
		t, refs, err := kc.StartCopy(ctx, kube.CopyOptions{
			Path: cfg.Target.Path, Namespace: target.Namespace, Session: sessionID, User: user,
			ScaleDown: ct.ScaleDown, Labels: ct.Labels, Progress: progress, Agent: cfg.Agent,
		})
		if err != nil {
			return nil, nil, err
		}
		p.refs = refs
		target = t
	}
	if len(p.refs) > 0 {
		if err := p.start(kopts); err != nil {
			p.End(context.WithoutCancel(ctx))
			return nil, nil, err
		}
	}
	return target, p, nil
}

// Frozen is the part of a session's remote that freezes.
type Frozen interface {
	Freeze(context.Context) (protocol.FreezeResult, error)
	Unfreeze(context.Context) (protocol.FreezeResult, error)
}

// AfterConnect freezes the target when the config says "pause": the
// session's hold on the pod's freeze lease first (so that a crash in
// between leaves a lease to clean up), then the agent's freeze.
func (p *Pause) AfterConnect(ctx context.Context, cfg *config.Config, target *kube.Target, remote Frozen, kopts kube.Options) error {
	if p == nil || !cfg.Pause {
		return nil
	}
	ref, err := p.client.FreezeLease(ctx, target, p.session)
	if err != nil {
		return err
	}
	p.refs = append(p.refs, ref)
	if p.guardian == nil {
		if err := p.start(kopts); err != nil {
			return err
		}
	} else {
		p.hold.SetRefs(p.refs)
		p.guardian.update(p.refs)
	}
	p.remote = remote
	start := time.Now()
	res, err := remote.Freeze(ctx)
	if err != nil {
		return fmt.Errorf("freezing %s: %w", target, err)
	}
	p.progress(fmt.Sprintf("froze %s (%.0f ms; %d session(s) hold the freeze)", target, float64(time.Since(start).Microseconds())/1000, res.Holders))
	return nil
}

// start begins renewing the leases and starts the guardian.
func (p *Pause) start(kopts kube.Options) error {
	if p.hold == nil {
		p.hold = p.client.KeepRenewed(p.session, p.refs, func(err error) { p.progress(fmt.Sprintf("warning: renewing the pause lease: %v", err)) })
	} else {
		p.hold.SetRefs(p.refs)
	}
	g, err := startLeaseGuardian(leaseJob{Kube: kopts, Session: p.session, Refs: p.refs})
	if err != nil {
		return err
	}
	p.guardian = g
	return nil
}

// End undoes the pause: the agent unfreezes for this session, the leases
// are released (the last holder thaws, restores the replicas, deletes the
// copy), and the guardian is dismissed.
func (p *Pause) End(ctx context.Context) error {
	if p == nil {
		return nil
	}
	p.endOnce.Do(func() { p.endErr = p.end(ctx) })
	return p.endErr
}

func (p *Pause) end(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var errs []error
	if p.remote != nil {
		if res, err := p.remote.Unfreeze(ctx); err != nil {
			errs = append(errs, err)
		} else if !res.Frozen {
			p.progress("thawed the target")
		}
	}
	if p.hold != nil {
		errs = append(errs, p.hold.Release(ctx))
	} else {
		errs = append(errs, p.client.ReleaseHolds(ctx, p.session, p.refs))
	}
	if p.guardian != nil {
		p.guardian.dismiss()
	}
	return errors.Join(errs...)
}

// Freeze and Unfreeze run on the live connection (after a resume too: a
// freeze is session state in the agent).
func (r *Reconnecting) Freeze(ctx context.Context) (protocol.FreezeResult, error) {
	return do(ctx, r, func(c *protocol.Client) (protocol.FreezeResult, error) { return c.Freeze(ctx) })
}

func (r *Reconnecting) Unfreeze(ctx context.Context) (protocol.FreezeResult, error) {
	return do(ctx, r, func(c *protocol.Client) (protocol.FreezeResult, error) { return c.Unfreeze(ctx) })
}

// The lease guardian: this binary re-executed (environment
// DOPPEL_LEASE_GUARDIAN), in a session of its own, holding a pipe from
// the helper on its stdin. The helper writes the current lease list as
// JSON lines; "q" is goodbye. When the pipe closes without it (the helper
// died, even by SIGKILL), the guardian releases the session's holds, and
// the last holder's end runs: the workload gets its replicas back, the
// copy pod goes. (The agent thaws a freeze by itself when its session is
// lost; the guardian drops the freeze lease's hold.)

const leaseGuardianEnv = "DOPPEL_LEASE_GUARDIAN"

type leaseJob struct {
	Kube    kube.Options     `json:"kube"`
	Session string           `json:"session"`
	Refs    []kube.ObjectRef `json:"refs"`
}

type leaseGuardian struct {
	cmd  *exec.Cmd
	pipe io.WriteCloser
}

func startLeaseGuardian(job leaseJob) (*leaseGuardian, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec, _ := json.Marshal(job)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), leaseGuardianEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pipe, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the lease guardian: %w", err)
	}
	go cmd.Wait()
	if _, err := fmt.Fprintf(pipe, "%s\n", spec); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		return nil, fmt.Errorf("the lease guardian did not start (%q, %v)", line, err)
	}
	return &leaseGuardian{cmd: cmd, pipe: pipe}, nil
}

func (g *leaseGuardian) update(refs []kube.ObjectRef) {
	b, _ := json.Marshal(leaseJob{Refs: refs})
	fmt.Fprintf(g.pipe, "%s\n", b)
}

func (g *leaseGuardian) dismiss() {
	io.WriteString(g.pipe, "q\n")
	g.pipe.Close()
}

// MaybeRunLeaseGuardian turns this process into a lease guardian if it
// was started as one, and exits; otherwise it returns at once. doppel's
// main calls it first.
func MaybeRunLeaseGuardian() {
	if os.Getenv(leaseGuardianEnv) == "" {
		return
	}
	os.Exit(runLeaseGuardian())
}

func runLeaseGuardian() int {
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGPIPE)
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadString('\n')
	var job leaseJob
	if err != nil || json.Unmarshal([]byte(line), &job) != nil {
		return 2
	}
	fmt.Println("ready")
	os.Stdout.Close()
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			break // the helper is gone
		}
		if strings.TrimSpace(line) == "q" {
			return 0
		}
		var upd leaseJob
		if json.Unmarshal([]byte(line), &upd) == nil && upd.Refs != nil {
			job.Refs = upd.Refs
		}
	}
	kc, err := kube.New(job.Kube)
	if err != nil {
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kc.ReleaseHolds(ctx, job.Session, job.Refs); err != nil {
		return 1
	}
	return 0
}

// ResolveTarget resolves the config's target; a workload whose session
// runs against a copy is not resolved to one of its pods (it may have
// none: scaled down by another session), PrepareTarget makes the copy.
func ResolveTarget(ctx context.Context, kc *kube.Client, cfg *config.Config, ns string) (*kube.Target, error) {
	if k := cfg.Target.Path.Kind; cfg.Feature.CopyTarget.Enabled && (k == config.TargetDeployment || k == config.TargetStatefulSet) {
		if ns == "" {
			ns = kc.Namespace
		}
		return &kube.Target{Path: cfg.Target.Path, Namespace: ns}, nil
	}
	return kc.Resolve(ctx, cfg.Target.Path, ns)
}
