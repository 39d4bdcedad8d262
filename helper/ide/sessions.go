package ide

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/helper/session"
	"github.com/doppel-dev/doppel/layer"
	"github.com/doppel-dev/doppel/layer/launcher"
)

// ideSession is a session started for debug launches; it lives until the
// IDE ends it (or the backend stops), across any number of debuggee runs.
type ideSession struct {
	id      string
	srv     *Server
	log     *slog.Logger
	started time.Time
	target  *TargetRef

	mu    sync.Mutex
	run   *session.Run
	state string
	why   string // the reason of the last state
	// paused is the debuggee's state as the IDE last told it; told is
	// what the session last accepted. pausing orders the calls that
	// bring told to paused.
	paused  bool
	told    bool
	pausing sync.Mutex
	// setPausedFn is run.SetPaused (a fake in unit tests).
	setPausedFn func(ctx context.Context, paused bool) (bool, error)
	ended       bool
	ignore      []uint16 // debugger ports: never subscribed
	preload     *layer.PreloadServer
	preloadIn   string // the preload socket's directory
	trees       []*launcher.Tree
}

func (s *ideSession) info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SessionInfo{SessionID: s.id, Target: s.target, State: s.state, Paused: s.paused, Started: s.started.UTC().Format(time.RFC3339Nano)}
}

// setState records and announces a state.
func (s *ideSession) setState(state, reason, category string) {
	s.mu.Lock()
	if (s.ended || s.state == StateEnded) && state != StateEnded {
		// Ended is final, also when the run ended before the start
		// finished (a lost agent).
		s.mu.Unlock()
		return
	}
	s.state, s.why = state, reason
	s.mu.Unlock()
	s.log.Info("session state", "state", state, "reason", reason)
	s.srv.notify(NotifySessionState, SessionStateParams{SessionID: s.id, State: state, Reason: reason, Category: category})
}

// live says whether the session's run goes on: false once it ended (its
// agent lost) even while the IDE has not ended the session yet.
func (s *ideSession) live() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended && s.state != StateEnded
}

func (s *ideSession) reasonEnded() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.why
}

// skipListen keeps debugger ports from being subscribed.
func (s *ideSession) skipListen(lp session.ListenPort) bool {
	s.mu.Lock()
	ignored := slices.Contains(s.ignore, lp.Requested.Port())
	s.mu.Unlock()
	if ignored {
		s.log.Info("debugger port not subscribed", "port", lp.Requested.Port(), "pid", lp.PID)
		return true
	}
	return false
}

func (s *ideSession) notice(n session.Notice) {
	sev := "warning"
	switch {
	case n.Fatal:
		sev = "error"
	case strings.HasPrefix(n.Message, fmt.Sprintf("port %d of the target: ", n.Port)):
		sev = "info"
	}
	s.log.Info("notice", "severity", sev, "message", n.Message)
	s.srv.notify(NotifyNotice, NoticeParams{SessionID: s.id, Severity: sev, Message: n.Message})
}

// wantPaused records the debuggee's state in the order the IDE sent it;
// syncPaused, which may run out of that order, then passes the latest.
func (s *ideSession) wantPaused(paused bool) {
	s.mu.Lock()
	s.paused = paused
	s.mu.Unlock()
}

// syncPaused passes the debuggee's latest state to the session (and the
// agent). Concurrent calls are serialized, and each passes the state as it
// is when its turn comes: a pause and a continue sent back to back never
// reach the agent in the wrong order.
func (s *ideSession) syncPaused(ctx context.Context) {
	s.pausing.Lock()
	defer s.pausing.Unlock()
	s.mu.Lock()
	want, told, set := s.paused, s.told, s.setPausedFn
	if set == nil && s.run != nil {
		set = s.run.SetPaused
	}
	s.mu.Unlock()
	if set == nil || want == told {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	agentTold, err := set(ctx, want)
	if err != nil {
		s.notice(session.Notice{Message: fmt.Sprintf("while the debuggee is paused, new connections keep going to it: %v", err)})
		return
	}
	s.mu.Lock()
	s.told = want
	s.mu.Unlock()
	s.log.Info("debuggee state", "paused", want, "agent_told", agentTold)
}

// end stops what the session started (Delve) and ends the session.
func (s *ideSession) end(reason, category string) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	trees, ps, dir, run := s.trees, s.preload, s.preloadIn, s.run
	s.trees = nil
	s.mu.Unlock()
	for _, t := range trees {
		t.Kill()
	}
	if ps != nil {
		ps.Close()
		os.RemoveAll(dir)
	}
	if run != nil {
		if err := run.Close(); err != nil {
			s.log.Debug("closing the session", "err", err)
		}
	}
	s.setState(StateEnded, reason, category)
}

// resolveLaunch starts or reuses a session and returns the launch to run.
func (s *Server) resolveLaunch(ctx context.Context, p ResolveLaunchParams) (any, error) {
	begin := time.Now()
	if p.Launch == nil {
		return nil, invalidParams("resolveLaunch needs launch, the IDE's launch configuration")
	}
	typ := launchString(p.Launch, "type")
	if !slices.Contains(debugTypes, typ) {
		return nil, &launchError{typ: typ, reason: "type", msg: fmt.Sprintf("doppel cannot run launches of type %q under the cluster: it supports %s",
			typ, strings.Join(debugTypes, ", "))}
	}
	if req := launchString(p.Launch, "request"); req != "" && req != "launch" {
		return nil, &launchError{typ: typ, reason: "request", msg: fmt.Sprintf("doppel intercepts programs the debugger starts (request \"launch\"), not %q: "+
			"a process that already runs was not started under doppel", req)}
	}
	var sess *ideSession
	if p.SessionID != "" {
		var err error
		if sess, err = s.get(p.SessionID); err != nil {
			return nil, err
		}
	} else {
		var err error
		if sess, err = s.startSession(ctx, p, begin); err != nil {
			return nil, err
		}
	}
	sess.mu.Lock()
	for _, port := range debuggerPorts(p.Launch) {
		if !slices.Contains(sess.ignore, port) {
			sess.ignore = append(sess.ignore, port)
		}
	}
	run := sess.run
	sess.mu.Unlock()

	targetEnv := envMap(run.Env(nil))
	res := ResolveLaunchResult{SessionID: sess.id, Target: sess.target, Warnings: run.Warnings}
	var err error
	if typ == "go" && !p.Wrap {
		res.Launch, err = s.launchDelve(ctx, sess, p, targetEnv)
	} else {
		res.Launch, err = s.launchPreloaded(sess, p, targetEnv)
		res.Wrapper = wrapper()
	}
	if err != nil {
		if p.SessionID == "" {
			// A session started for this launch goes with it.
			if s, err2 := s.take(sess.id); err2 == nil {
				s.end("the launch could not be prepared: "+err.Error(), CategoryInternal)
			}
		}
		return nil, err
	}
	s.log.Info("launch resolved", "session", sess.id, "type", typ, "elapsed", time.Since(begin))
	return res, nil
}

// startSession loads the config and starts a session for a launch.
func (s *Server) startSession(ctx context.Context, p ResolveLaunchParams, begin time.Time) (*ideSession, error) {
	cfgPath := p.ConfigFile
	if cfgPath == "" && p.WorkspaceFolder != "" {
		found, err := config.Find(p.WorkspaceFolder)
		if err != nil {
			return nil, err
		}
		cfgPath = found
	}
	cfg := config.Default()
	if cfgPath != "" {
		var err error
		if cfg, err = config.Load(cfgPath); err != nil {
			return nil, err
		}
	}
	if err := cfg.Apply(config.Overrides{Target: p.Target}); err != nil {
		return nil, err
	}
	ko := s.opts.Kube
	kopts := ko
	if kopts.Kubeconfig == "" {
		kopts.Kubeconfig = cfg.KubeconfigPath()
	}
	if kopts.Context == "" {
		kopts.Context = cfg.KubeContext
	}
	kopts.Namespace = cfg.Target.Namespace
	if ko.Namespace != "" {
		kopts.Namespace = ko.Namespace
	}
	if p.Namespace != "" {
		kopts.Namespace = p.Namespace
	}
	id := uuid.NewString()
	sess := &ideSession{id: id, srv: s, log: s.log.With("session", id), started: time.Now(), state: StateStarting}
	// Start ends with the backend (shutdown), not with the request.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.life, cancel)
	defer stop()
	sess.setState(StateStarting, "", "")
	host := config.LocalHostPaths()
	if p.WorkspaceFolder != "" {
		host.WorkDir = p.WorkspaceFolder
	}
	run, err := s.opts.Start(sctx, session.StartOptions{
		Config: cfg, Kube: kopts, ID: id, AgentAddress: s.opts.AgentAddress, AgentToken: s.opts.AgentToken,
		Log: s.log.With("session", id), Host: host,
		Progress: func(step string) {
			s.notify(NotifyProgress, ProgressParams{SessionID: id, Step: step, ElapsedMS: time.Since(begin).Milliseconds()})
		},
		OnState: func(state, reason string) {
			category := ""
			if state == "ended" {
				category = CategoryCluster
			}
			sess.setState(state, reason, category)
		},
		OnNotice:   sess.notice,
		SkipListen: sess.skipListen,
	})
	if err != nil {
		err = classifyStart(err)
		category := CategoryCluster
		if _, _, ok := configDiagnostics(err); ok {
			category = CategoryConfig
		}
		var le *launchError
		if errors.As(err, &le) {
			category = CategoryUser
		}
		sess.ended = true
		sess.state = StateEnded
		s.notify(NotifySessionState, SessionStateParams{SessionID: id, State: StateEnded, Reason: err.Error(), Category: category})
		return nil, err
	}
	sess.mu.Lock()
	sess.run = run
	if t := run.Target; t != nil {
		sess.target = &TargetRef{Path: t.Path.String(), Namespace: t.Namespace, Pod: t.Pod, Container: t.Container}
	}
	sess.mu.Unlock()
	s.mu.Lock()
	// endAll cancels life before it collects the table: a start that
	// finishes after that must not add a session nobody ends.
	if s.shutdown || s.life.Err() != nil {
		s.mu.Unlock()
		sess.end("the IDE backend stopped", "")
		return nil, errors.New("the backend is shutting down")
	}
	s.sessions[id] = sess
	s.mu.Unlock()
	sess.setState(StateReady, "", "")
	if !sess.live() {
		// The run ended as it started (the agent lost already).
		if s, err := s.take(id); err == nil {
			s.end("", "")
		}
		return nil, &clusterError{errors.New("the session ended as soon as it started: " + sess.reasonEnded())}
	}
	return sess, nil
}

// classifyStart marks what went wrong in a session start for rpcError.
func classifyStart(err error) error {
	if _, _, ok := configDiagnostics(err); ok {
		return err
	}
	if strings.Contains(err.Error(), "cannot intercept programs on this machine") {
		return &launchError{typ: "", reason: "kernel", msg: err.Error()}
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return &clusterError{err}
}

// launchPreloaded is node, python, java: the IDE starts the debuggee with
// libdoppel.so preloaded, which hands its filter to this session.
func (s *Server) launchPreloaded(sess *ideSession, p ResolveLaunchParams, targetEnv map[string]string) (map[string]any, error) {
	shim := s.opts.Shim
	if shim == "" {
		var err error
		if shim, err = findShim(); err != nil {
			return nil, &launchError{typ: launchString(p.Launch, "type"), reason: "shim", msg: err.Error()}
		}
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.ended || sess.state == StateEnded {
		return nil, &sessionError{sess.id}
	}
	if sess.preload == nil {
		dir, err := os.MkdirTemp("", "doppel-ide-")
		if err != nil {
			return nil, err
		}
		ps, err := layer.ListenPreload(sess.run.Supervisor, filepath.Join(dir, "layer.sock"))
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		go ps.Serve()
		sess.preload, sess.preloadIn = ps, dir
	}
	prior := ""
	if own, ok := p.Launch["env"].(map[string]any); ok {
		prior, _ = own["LD_PRELOAD"].(string)
	}
	// A launch resolved before (a restarted debug session) has the shim
	// already: keep it once.
	var others []string
	for _, lib := range strings.Split(prior, ":") {
		if lib != "" && lib != shim {
			others = append(others, lib)
		}
	}
	prior = strings.Join(others, ":")
	return withEnv(p.Launch, targetEnv, envMap(sess.preload.Env(shim, prior))), nil
}

// findShim finds libdoppel.so: $DOPPEL_SHIM, else next to the doppel
// binary.
func findShim() (string, error) {
	shim := os.Getenv("DOPPEL_SHIM")
	if shim == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		shim = filepath.Join(filepath.Dir(exe), "libdoppel.so")
	}
	if _, err := os.Stat(shim); err != nil {
		return "", fmt.Errorf("this launch type is intercepted with libdoppel.so, which is missing (`make shim` builds bin/libdoppel.so next to bin/doppel; or set DOPPEL_SHIM): %w", err)
	}
	return shim, nil
}

// launchDelve starts `dlv dap` under the session's launcher: Delve is a
// build tool (not intercepted), whatever it builds and runs inherits the
// filter, statically linked programs included. The Go extension connects
// to it (launch.port and launch.host).
func (s *Server) launchDelve(ctx context.Context, sess *ideSession, p ResolveLaunchParams, targetEnv map[string]string) (map[string]any, error) {
	dlv, ok := findDlv(p.Launch, s.opts.Dlv)
	if !ok {
		return nil, &launchError{typ: "go", reason: "dlv_not_found",
			msg: "Delve (dlv) is not installed: `go install github.com/go-delve/delve/cmd/dlv@latest`, or set dlvToolPath in the launch configuration"}
	}
	dir := launchString(p.Launch, "cwd")
	if dir == "" {
		dir = p.WorkspaceFolder
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	tree, err := launcher.Start(ctx, launcher.Spec{Filter: sess.run.Filter}, launcher.Command{
		Path:   dlv,
		Args:   []string{dlv, "dap", "--listen=127.0.0.1:0"},
		Env:    os.Environ(),
		Dir:    dir,
		Stdout: pw,
		Stderr: pw,
	}, sess.run.Supervisor.Serve)
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, fmt.Errorf("start Delve: %w", err)
	}
	addr := make(chan string, 1)
	log := sess.log.With("part", "dlv", "pid", tree.Pid)
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			log.Info("dlv", "out", line)
			if ap, ok := parseListen(line); ok {
				select {
				case addr <- ap.String():
				default:
				}
			}
		}
	}()
	sess.mu.Lock()
	if sess.ended || sess.state == StateEnded {
		sess.mu.Unlock()
		tree.Kill()
		return nil, &sessionError{sess.id}
	}
	sess.trees = append(sess.trees, tree)
	sess.mu.Unlock()
	go func() {
		code := tree.Wait()
		log.Info("Delve exited", "code", code)
		sess.mu.Lock()
		sess.trees = slices.DeleteFunc(sess.trees, func(t *launcher.Tree) bool { return t == tree })
		sess.mu.Unlock()
	}()
	var listen string
	select {
	case listen = <-addr:
	case <-tree.Exited():
		return nil, errors.New("delve exited before it listened (see the log)")
	case <-time.After(30 * time.Second):
		tree.Kill()
		return nil, errors.New("delve did not listen within 30s")
	case <-ctx.Done():
		tree.Kill()
		return nil, ctx.Err()
	}
	host, port, _ := strings.Cut(listen, ":")
	if i := strings.LastIndexByte(listen, ':'); i >= 0 {
		host, port = listen[:i], listen[i+1:]
	}
	out := withEnv(p.Launch, targetEnv, nil)
	out["host"] = host
	n := 0
	fmt.Sscan(port, &n)
	out["port"] = n
	return out, nil
}

// wrapper is the command prefix that runs a command inside the session a
// preloaded launch belongs to: this binary's `wrap`.
func wrapper() []string {
	exe, err := os.Executable()
	if err != nil {
		exe = "doppel"
	}
	return []string{exe, "wrap", "--"}
}
