//go:build !linux

package main

import (
	"fmt"
	"os"
)

// serve needs Linux namespaces; the agent always runs on a Linux node.
func serve([]string) int {
	fmt.Fprintln(os.Stderr, "doppel-agent: serve runs on Linux only")
	return 1
}

// thaw needs the cgroup freezer: Linux only.
func thaw([]string) int {
	fmt.Fprintln(os.Stderr, "doppel-agent: thaw runs on Linux only")
	return 1
}
