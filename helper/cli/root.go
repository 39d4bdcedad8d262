// Package cli holds doppel's cobra commands. Every command is built by a
// New…Command function from injected dependencies; there are no globals.
package cli

import (
	"log/slog"

	"github.com/spf13/cobra"
)

// Deps are what every command is built from.
type Deps struct {
	Logger  *slog.Logger
	Streams Streams
}

// NewCommand returns the root `doppel` command with all subcommands.
func NewCommand(deps Deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doppel",
		Short: "Run a local process as if it ran inside a Kubernetes pod",
		Long: `doppel runs a process on your machine as if it ran inside a pod of your
cluster: it gets the pod's environment, reaches cluster services and DNS
through the pod, reads the pod's files and receives the pod's incoming traffic.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetIn(deps.Streams.In)
	cmd.SetOut(deps.Streams.Out)
	cmd.SetErr(deps.Streams.Err)
	cmd.AddCommand(NewVersionCommand(deps))
	cmd.AddCommand(NewExecCommand(deps))
	cmd.AddCommand(NewLsCommand(deps))
	cmd.AddCommand(NewCleanupCommand(deps))
	cmd.AddCommand(NewIDECommand(deps))
	cmd.AddCommand(NewWrapCommand(deps))
	return cmd
}
