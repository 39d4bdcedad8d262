//go:build linux

package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/doppel-dev/doppel/agent/freeze"
	"github.com/doppel-dev/doppel/agent/target"
)

// thaw thaws a container whose agent could not (a stale freeze lease:
// `doppel cleanup` and later doppel runs start it as a one-shot Job).
func thaw(args []string) int {
	fs := flag.NewFlagSet("thaw", flag.ContinueOnError)
	containerID := fs.String("target-container-id", "", "ID of the container to thaw (RUNTIME://ID)")
	if err := fs.Parse(args); err != nil || *containerID == "" {
		fmt.Fprintln(os.Stderr, "doppel-agent: thaw needs --target-container-id")
		return exitUsage
	}
	pid, err := target.FindContainer("/proc", *containerID)
	if err != nil {
		// The container is gone: nothing is frozen any more.
		fmt.Printf("nothing to thaw: %v\n", err)
		return exitOK
	}
	f, err := freeze.FindFreezer("/proc", pid)
	if err != nil {
		fmt.Fprintf(os.Stderr, "doppel-agent: %v\n", err)
		return exitFailed
	}
	if err := f.Thaw(); err != nil {
		fmt.Fprintf(os.Stderr, "doppel-agent: %v\n", err)
		return exitFailed
	}
	fmt.Printf("thawed %s (%s)\n", *containerID, f.Dir)
	return exitOK
}
