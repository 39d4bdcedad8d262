package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/helper/session"
	"github.com/doppel-dev/doppel/layer/launcher"
)

// ExitError carries the exit status of the command `doppel exec` ran, which
// becomes doppel's own.
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

type execFlags struct {
	configFile   string
	agentAddress string
	agentToken   string
	reportListen string
	preload      bool
	overrides    config.Overrides
	kube         kubeFlags
}

// NewExecCommand returns `doppel exec`.
func NewExecCommand(deps Deps) *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] -- COMMAND [ARGS...]",
		Short: "Run a command as if it ran inside the target pod",
		Long: `Run COMMAND under doppel's layer: it gets the target's environment, reaches
cluster services and DNS through the target pod and reads the pod's files.
Its exit status is doppel's.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExec(cmd.Context(), deps, f, args)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.StringVarP(&f.configFile, "config", "f", "", "configuration file (default: the one in .doppel/ or .mirrord/)")
	fl.StringVarP(&f.overrides.Target, "target", "t", "", "the target: deployment/NAME, pod/NAME[/container/C], statefulset/…, job/…, cronjob/…, service/…, rollout/…, or targetless")
	fl.StringVar(&f.overrides.FSMode, "fs-mode", "", "file mode: read, write, local or localwithoverrides (feature.fs.mode)")
	fl.StringVar(&f.overrides.IncomingMode, "incoming", "", "incoming traffic: mirror, steal or off (feature.network.incoming.mode)")
	f.kube.register(fl)
	// Development: talk to an agent started by hand (`doppel-agent serve`).
	fl.StringVar(&f.agentAddress, "agent-address", "", "connect to this agent instead of starting one")
	fl.StringVar(&f.agentToken, "agent-token", "", "the session token the agent was started with")
	// Tests: where the command listens, as JSON lines (see listenReport).
	fl.StringVar(&f.reportListen, "report-listen", "", "write each port the command listens on to this file, one JSON object a line")
	fl.MarkHidden("agent-address")
	fl.MarkHidden("agent-token")
	fl.MarkHidden("report-listen")
	fl.BoolVar(&f.preload, "preload", false, "intercept with libdoppel.so preloaded instead of the launcher, as IDE launches are (dynamically linked programs only)")
	return cmd
}

func loadConfig(path string) (*config.Config, error) {
	if path != "" {
		return config.Load(path)
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	found, err := config.Find(wd)
	if err != nil {
		return nil, err
	}
	if found == "" {
		return config.Default(), nil
	}
	return config.Load(found)
}

// stdio returns the *os.File behind a stream, for the command to inherit.
func stdio(v any, fallback *os.File) *os.File {
	if file, ok := v.(*os.File); ok {
		return file
	}
	return fallback
}

func runExec(ctx context.Context, deps Deps, f execFlags, args []string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := loadConfig(f.configFile)
	if err != nil {
		return err
	}
	if err := cfg.Apply(f.overrides); err != nil {
		return err
	}
	var onListen func(session.ListenPort)
	if f.reportListen != "" {
		report, err := newListenReport(f.reportListen)
		if err != nil {
			return err
		}
		defer report.Close()
		onListen = report.add
	}
	errOut := stdio(deps.Streams.Err, os.Stderr)
	host := config.LocalHostPaths()
	host.Executable = args[0]
	if p, err := lookPath(args[0], os.Environ()); err == nil {
		host.Executable = p
	}
	fatal := make(chan session.Notice, 1)
	// ^C (or a TERM or HUP) while the session starts cancels the start,
	// which undoes what it did so far (a scale-down, a copy pod), instead
	// of killing doppel halfway; the launcher forwards signals after.
	startCtx, interrupted := startInterruptible(ctx)
	run, err := session.Start(startCtx, session.StartOptions{
		Config: cfg, Kube: f.kube.options(cfg), AgentAddress: f.agentAddress, AgentToken: f.agentToken,
		Log: deps.Logger, Host: host, OnListen: onListen,
		Progress: func(step string) { fmt.Fprintf(errOut, "doppel: %s\n", step) },
		OnState: func(state, reason string) {
			switch state {
			case "reconnecting":
				fmt.Fprintf(errOut, "doppel: lost the connection to the agent (%s): reconnecting\n", reason)
			case "ready":
				fmt.Fprintf(errOut, "doppel: reconnected to the agent: the session goes on\n")
			case "ended":
				fmt.Fprintf(errOut, "doppel: the session with the agent has ended (%s). The local process keeps running, "+
					"but its connections, DNS and files through the cluster fail from now on; the target was not changed\n", reason)
			}
		},
		OnNotice: func(n session.Notice) {
			fmt.Fprintf(errOut, "doppel: %s\n", n.Message)
			if n.Fatal {
				select {
				case fatal <- n:
				default:
				}
			}
		}})
	if sig := interrupted(); sig != nil {
		if err == nil {
			run.Close()
		}
		fmt.Fprintf(errOut, "doppel: %v while starting: stopped, and what the start changed in the cluster is undone\n", sig)
		return ExitError{Code: 128 + int(sig.(syscall.Signal))}
	}
	if err != nil {
		return err
	}
	defer run.Close()
	for _, w := range run.Warnings {
		deps.Logger.Warn(w)
	}
	sess, sup := run.Session, run.Supervisor
	env := sess.Env(os.Environ())
	path, err := lookPath(args[0], env)
	if err != nil {
		// As a shell says it, before anything runs.
		fmt.Fprintf(stdio(deps.Streams.Err, os.Stderr), "doppel: %v\n", err)
		return ExitError{Code: 127}
	}
	if f.preload {
		return runPreloaded(deps, sup, path, args, env)
	}
	tree, err := launcher.Start(ctx, launcher.Spec{Filter: sup.Filter()}, launcher.Command{
		Path:           path,
		Args:           args,
		Env:            env,
		Stdin:          stdio(deps.Streams.In, os.Stdin),
		Stdout:         stdio(deps.Streams.Out, os.Stdout),
		Stderr:         stdio(deps.Streams.Err, os.Stderr),
		ForwardSignals: true,
	}, sup.Serve)
	if err != nil {
		return fmt.Errorf("start %s: %w", args[0], err)
	}
	go func() {
		select {
		case <-fatal:
			fmt.Fprintf(errOut, "doppel: stopping %s (on_concurrent_steal is \"abort\")\n", args[0])
			tree.Signal(syscall.SIGTERM)
		case <-tree.Exited():
		}
	}()
	if code := tree.Wait(); code != 0 {
		return ExitError{Code: code}
	}
	return nil
}

// lookPath finds a command name without a slash in the PATH of env (the
// command's own environment), so that a missing command exits 127 as in a
// shell; a name with a slash is the launcher's to run (it exits 127 or 126
// when exec fails).
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathEnv := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "." // an empty entry is the working directory
		}
		candidate := filepath.Join(dir, name)
		if !filepath.IsAbs(candidate) {
			candidate = "./" + candidate
		}
		if st, err := os.Stat(candidate); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return candidate, nil
		}
	}
	return "", fmt.Errorf("%s: command not found", name)
}

// startInterruptible returns a context that SIGINT, SIGTERM or SIGHUP
// cancel, and a function that stops watching for them and returns the
// signal that came, if one did. Without a signal the context is never
// cancelled: what the start made may keep it.
func startInterruptible(ctx context.Context) (context.Context, func() os.Signal) {
	ctx, cancel := context.WithCancel(ctx)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var got os.Signal
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case got = <-sigs:
			cancel()
		case <-stop:
		}
	}()
	return ctx, func() os.Signal {
		signal.Stop(sigs)
		close(stop)
		<-done
		return got
	}
}
