package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

func psCmd(args []string, stdout, stderr io.Writer) int {
	procs, err := listProcs("/proc")
	if err != nil {
		fmt.Fprintf(stderr, "toolbox ps: %v\n", err)
		return 1
	}
	for _, p := range procs {
		fmt.Fprintf(stdout, "%d %s\n", p.pid, p.cmdline)
	}
	return 0
}

type proc struct {
	pid     int
	cmdline string
}

// listProcs reads every process's command line under procRoot, in PID
// order. Arguments are joined with spaces; a process without one (a kernel
// thread, a zombie) shows its name in brackets, as ps does.
func listProcs(procRoot string) ([]proc, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var procs []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cmdline"))
		if err != nil {
			continue // exited since ReadDir
		}
		cmdline := strings.Join(strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00"), " ")
		if cmdline == "" {
			comm, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
			if err != nil {
				continue
			}
			cmdline = "[" + strings.TrimSpace(string(comm)) + "]"
		}
		procs = append(procs, proc{pid, cmdline})
	}
	sort.Slice(procs, func(i, j int) bool { return procs[i].pid < procs[j].pid })
	return procs, nil
}
