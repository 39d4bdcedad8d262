package cli

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/doppel-dev/doppel/layer"
)

// NewWrapCommand returns `doppel wrap`: run a command inside the doppel
// session an IDE launch belongs to (its env names the session), under the
// session's launcher: for what preloading can't intercept, such as a
// statically linked Go program or a debugger's debuggee.
func NewWrapCommand(deps Deps) *cobra.Command {
	return &cobra.Command{
		Use:   "wrap -- CMD [ARGS...]",
		Short: "Run a command inside the doppel session named by the environment (IDE launches)",
		Long: `doppel wrap runs CMD inside the doppel session that started the launch this
process belongs to (DOPPEL_LAYER_SOCKET, set in launches resolved by doppel ide).
CMD runs under the session's seccomp launcher, so statically linked programs are
intercepted too; its output is this process's, signals sent to this process
reach it, and its exit code is this process's.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			socket := os.Getenv(layer.EnvSocket)
			if socket == "" {
				return fmt.Errorf("%s is not set: doppel wrap runs inside a launch resolved by doppel ide (or use doppel exec)", layer.EnvSocket)
			}
			path, err := exec.LookPath(args[0])
			if err != nil {
				fmt.Fprintf(deps.Streams.Err, "doppel: %v\n", err)
				return ExitError{Code: 127}
			}
			if path, err = filepath.Abs(path); err != nil {
				return err
			}
			dir, err := os.Getwd()
			if err != nil {
				return err
			}
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
			defer signal.Stop(sigs)
			code, err := layer.Wrap(socket, layer.RunRequest{Path: path, Args: args, Env: os.Environ(), Dir: dir}, sigs, nil)
			if err != nil {
				return err
			}
			if code != 0 {
				return ExitError{Code: code}
			}
			return nil
		},
	}
}
