package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/doppel-dev/doppel/internal/buildinfo"
)

// NewVersionCommand returns `doppel version`.
func NewVersionCommand(deps Deps) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and protocol version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := buildinfo.Get()
			switch output {
			case "":
				_, err := fmt.Fprintf(deps.Streams.Out, "doppel %s\n", info)
				return err
			case "json":
				enc := json.NewEncoder(deps.Streams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			default:
				return fmt.Errorf("unknown output format %q for --output: use json, or leave it out", output)
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}
