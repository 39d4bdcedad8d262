// Package procfs reads what the benchmarks report of this node's processes
// from /proc: the agents' CPU, context switches and memory, and the node's
// busy CPU time. On the local cluster the agents run on this machine.
package procfs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// userHZ is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

// Agents returns the /proc directories of the agent processes on this node.
func Agents() []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var dirs []string
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte("doppel-agent\x00serve")) {
			dirs = append(dirs, filepath.Dir(p))
		}
	}
	return dirs
}

// Agent returns the one agent process's directory.
func Agent() (string, error) {
	dirs := Agents()
	if len(dirs) == 0 {
		return "", fmt.Errorf("no agent process found on this node")
	}
	return dirs[0], nil
}

// CPU is the process's user and system time so far, in seconds.
func CPU(dir string) (float64, error) {
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0, err
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // state is f[0]; utime f[11], stime f[12]
	if len(f) < 13 {
		return 0, fmt.Errorf("%s/stat: %q", dir, s)
	}
	return (num(f[11]) + num(f[12])) / userHZ, nil
}

var switchesRE = regexp.MustCompile(`(?m)^(?:non)?voluntary_ctxt_switches:\s+(\d+)`)

// Switches is the context switches of all the process's threads so far.
func Switches(dir string) float64 {
	tasks, _ := filepath.Glob(filepath.Join(dir, "task", "*", "status"))
	var n float64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, m := range switchesRE.FindAllSubmatch(b, -1) {
			n += num(string(m[1]))
		}
	}
	return n
}

var rssRE = regexp.MustCompile(`VmRSS:\s+(\d+) kB`)

// RSS is the process's resident memory in MiB.
func RSS(dir string) (float64, error) {
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return 0, err
	}
	m := rssRE.FindSubmatch(status)
	if m == nil {
		return 0, fmt.Errorf("%s/status: no VmRSS", dir)
	}
	return num(string(m[1])) / 1024, nil
}

// NodeBusy sums /proc/stat's busy columns (user, nice, system, irq,
// softirq; not idle, iowait or the hypervisor's steal), in seconds.
func NodeBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7} {
		if i < len(f) {
			busy += num(f[i])
		}
	}
	return busy / userHZ
}

func num(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}
