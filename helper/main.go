// Command doppel runs a local process as if it ran inside a Kubernetes pod.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/doppel-dev/doppel/helper/cli"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cmd := cli.NewCommand(cli.Deps{Logger: logger, Streams: cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}})
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "doppel: %v\n", err)
		os.Exit(1)
	}
}
