package main

import (
	"fmt"
	"io"
	"os"
)

// catCmd prints files, as the agent will read them: e2e tests use it from a
// hostPID pod to read another pod's /proc/PID/environ and /proc/PID/root.
func catCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: toolbox cat FILE...")
		return 2
	}
	for _, name := range args {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "toolbox cat: %v\n", err)
			return 1
		}
		_, err = io.Copy(stdout, f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "toolbox cat: %s: %v\n", name, err)
			return 1
		}
	}
	return 0
}
