package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/doppel-dev/doppel/helper/kube"
)

type cleanupFlags struct {
	kube          kubeFlags
	configFile    string
	allNamespaces bool
	allUsers      bool
	output        string
}

// NewCleanupCommand returns `doppel cleanup`.
func NewCleanupCommand(deps Deps) *cobra.Command {
	var f cleanupFlags
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove the agent Jobs and pods you left in the cluster",
		Long: `Remove the doppel agents you started (labelled with your Kubernetes user name)
in the namespace, or in all namespaces with -A. Agents exit by themselves once
their last session is gone and their Jobs are then deleted; this is for what
an interrupted start leaves behind. Sessions using a removed agent end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCleanup(cmd.Context(), deps, f)
		},
	}
	fl := cmd.Flags()
	f.kube.register(fl)
	fl.StringVarP(&f.configFile, "config", "f", "", "configuration file, for kubeconfig, kube_context and agent.namespace")
	fl.BoolVarP(&f.allNamespaces, "all-namespaces", "A", false, "clean every namespace")
	fl.BoolVar(&f.allUsers, "all-users", false, "remove every user's agents, not only yours")
	fl.StringVarP(&f.output, "output", "o", "", `output format: "" (text) or "json"`)
	return cmd
}

func runCleanup(ctx context.Context, deps Deps, f cleanupFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := loadConfig(f.configFile)
	if err != nil {
		return err
	}
	opts := f.kube.options(cfg)
	// Pause leases sit on the targets, in the target's namespace.
	targets, err := kube.New(opts)
	if err != nil {
		return err
	}
	// Agents live in agent.namespace when it is set.
	client := targets
	if f.kube.namespace == "" && cfg != nil && cfg.Agent.Namespace != "" {
		opts.Namespace = cfg.Agent.Namespace
		if client, err = kube.New(opts); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	co := kube.CleanupOptions{AllNamespaces: f.allNamespaces}
	if !f.allUsers {
		if co.User, err = client.Username(ctx); err != nil {
			return fmt.Errorf("who are you? %w (use --all-users to remove every user's agents)", err)
		}
	}
	removed, err := client.Cleanup(ctx, co)
	// Stale pause leases (docs/pause.md): thaw, restore, delete copies.
	kube.ThawConfig = &cfg.Agent
	leaseNS := targets.Namespace
	if f.allNamespaces {
		leaseNS = ""
	}
	fixed, lerr := targets.ReconcileStale(ctx, leaseNS)
	removed = append(removed, fixed...)
	err = errors.Join(err, lerr)
	if f.output == "json" {
		enc := json.NewEncoder(deps.Streams.Out)
		enc.SetIndent("", "  ")
		if encErr := enc.Encode(removed); encErr != nil {
			return encErr
		}
		return err
	}
	for _, r := range removed {
		fmt.Fprintf(deps.Streams.Out, "removed %s %s/%s (%s)\n", r.Kind, r.Namespace, r.Name, r.Target)
	}
	if err == nil && len(removed) == 0 {
		fmt.Fprintln(deps.Streams.Out, "nothing to remove")
	}
	return err
}
