// Command doppel runs a local process as if it ran inside a Kubernetes pod.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/doppel-dev/doppel/helper/cli"
	"github.com/doppel-dev/doppel/helper/session"
	"github.com/doppel-dev/doppel/layer/launcher"
)

func main() {
	// In the hidden launcher mode this installs the layer and execs the
	// command; otherwise it returns at once.
	launcher.Main()
	// The pause's lease guardian is this binary too (docs/pause.md).
	session.MaybeRunLeaseGuardian()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cmd := cli.NewCommand(cli.Deps{Logger: logger, Streams: cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}})
	if err := cmd.Execute(); err != nil {
		var exit cli.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.Code)
		}
		fmt.Fprintf(os.Stderr, "doppel: %v\n", err)
		os.Exit(1)
	}
}
