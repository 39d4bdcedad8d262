package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/doppel-dev/doppel/helper/kube"
)

type lsFlags struct {
	kube          kubeFlags
	configFile    string
	allNamespaces bool
	output        string
}

// NewLsCommand returns `doppel ls`: the targets a picker offers.
func NewLsCommand(deps Deps) *cobra.Command {
	var f lsFlags
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the targets of a namespace (deployments, pods, services, …)",
		Long: `List what --target can name in a namespace, or in all of them with -A: each
target's path, containers and readiness. -o json prints the stable form IDEs
read (docs/ls.md), with the list of namespaces.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLs(cmd.Context(), deps, f)
		},
	}
	fl := cmd.Flags()
	f.kube.register(fl)
	fl.StringVarP(&f.configFile, "config", "f", "", "configuration file, for kubeconfig, kube_context and target.namespace (default: the one in .doppel/ or .mirrord/)")
	fl.BoolVarP(&f.allNamespaces, "all-namespaces", "A", false, "list the targets of every namespace")
	fl.StringVarP(&f.output, "output", "o", "", `output format: "" (a table) or "json"`)
	return cmd
}

func runLs(ctx context.Context, deps Deps, f lsFlags) error {
	if f.output != "" && f.output != "json" {
		return fmt.Errorf(`invalid --output %q: use "json" or leave it out for a table`, f.output)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := loadConfig(f.configFile)
	if err != nil {
		return err
	}
	client, err := kube.New(f.kube.options(cfg))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	listing, err := client.List(ctx, kube.ListOptions{AllNamespaces: f.allNamespaces})
	if err != nil {
		return err
	}
	if f.output == "json" {
		enc := json.NewEncoder(deps.Streams.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(listing)
	}
	w := tabwriter.NewWriter(deps.Streams.Out, 0, 4, 2, ' ', 0)
	if f.allNamespaces {
		fmt.Fprint(w, "NAMESPACE\t")
	}
	fmt.Fprintln(w, "TARGET\tREADY\tCONTAINERS")
	for _, t := range listing.Targets {
		if f.allNamespaces {
			fmt.Fprintf(w, "%s\t", t.Namespace)
		}
		fmt.Fprintf(w, "%s\t%d/%d\t%s\n", t.Path, t.ReadyPods, t.Pods, strings.Join(t.Containers, ","))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, warning := range listing.Warnings {
		fmt.Fprintln(deps.Streams.Err, "warning:", warning)
	}
	return nil
}
