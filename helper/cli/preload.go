package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/doppel-dev/doppel/layer"
	"github.com/doppel-dev/doppel/layer/launcher"
)

// shimPath finds libdoppel.so: $DOPPEL_SHIM, else next to the doppel binary
// (`make build` puts both in bin/).
func shimPath() (string, error) {
	shim := os.Getenv("DOPPEL_SHIM")
	if shim == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		shim = filepath.Join(filepath.Dir(exe), "libdoppel.so")
	}
	if _, err := os.Stat(shim); err != nil {
		return "", fmt.Errorf("preload mode needs libdoppel.so (`make shim` builds bin/libdoppel.so next to bin/doppel; or set DOPPEL_SHIM): %w", err)
	}
	return shim, nil
}

// runPreloaded runs the command the way an IDE launch is intercepted: not
// under the launcher, but with libdoppel.so preloaded, which hands the
// process's filter listener to sup. Statically linked programs ignore
// LD_PRELOAD and run unintercepted: use the launcher for them.
func runPreloaded(deps Deps, sup *layer.Supervisor, path string, args, env []string) error {
	shim, err := shimPath()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "doppel-preload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ps, err := layer.ListenPreload(sup, filepath.Join(dir, "layer.sock"))
	if err != nil {
		return err
	}
	defer ps.Close()
	go ps.Serve()

	var preload string
	kept := env[:0:0]
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "LD_PRELOAD="); ok {
			preload = v
			continue
		}
		kept = append(kept, kv)
	}
	cmd := exec.Command(path, args[1:]...)
	cmd.Args = args
	cmd.Env = append(kept, ps.Env(shim, preload)...)
	cmd.Stdin = stdio(deps.Streams.In, os.Stdin)
	cmd.Stdout = stdio(deps.Streams.Out, os.Stdout)
	cmd.Stderr = stdio(deps.Streams.Err, os.Stderr)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", args[0], err)
	}
	// Preloaded, it will carry a filter: not an orphan of a tree `doppel
	// wrap` may start in this session.
	launcher.Foreign(cmd.Process.Pid)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code := exit.ExitCode()
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return ExitError{Code: code}
	}
	return err
}
