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
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()}))
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

// logLevel is DOPPEL_LOG (debug, info, warn or error), warn when unset or
// not a level.
func logLevel() slog.Level {
	level := slog.LevelWarn
	if v := os.Getenv("DOPPEL_LOG"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			fmt.Fprintf(os.Stderr, "doppel: DOPPEL_LOG=%q is not a level (debug, info, warn, error); using warn\n", v)
			level = slog.LevelWarn
		}
	}
	return level
}
