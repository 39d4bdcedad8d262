package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The node's CPU, to show where a CPU-bound load's throughput goes: on the
// local cluster the client pod, the target and the agent share the same
// cores, so requests per second at a fixed concurrency follow the CPU
// each request costs.

// clockTick is USER_HZ, the unit of /proc's CPU times (100 on Linux).
const clockTick = 100

// cpuSample is the node's busy CPU time and the agents' (all of them on
// this node: the bench's namespace runs one), in seconds.
type cpuSample struct{ node, agent float64 }

func sampleCPU() cpuSample {
	return cpuSample{node: nodeBusy(), agent: agentsCPU()}
}

// nodeBusy sums /proc/stat's busy columns (user, nice, system, irq,
// softirq; not idle, iowait or the hypervisor's steal).
func nodeBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7} {
		if i < len(f) {
			v, _ := strconv.ParseFloat(f[i], 64)
			busy += v
		}
	}
	return busy / clockTick
}

// agentsCPU sums utime and stime of the agent processes on this node.
func agentsCPU() float64 {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var total float64
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(b, []byte("/doppel-agent\x00serve")) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // state is f[0]; utime f[11], stime f[12]
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64)
			st, _ := strconv.ParseFloat(f[12], 64)
			total += (u + st) / clockTick
		}
	}
	return total
}

// perRequest is the CPU the samples' interval cost per request, in µs.
func perRequest(before, after cpuSample, requests int64) (node, agent float64) {
	if requests <= 0 {
		return 0, 0
	}
	n := float64(requests)
	return (after.node - before.node) * 1e6 / n, (after.agent - before.agent) * 1e6 / n
}

func fmtCPU(node, agent float64) string {
	return fmt.Sprintf("%.0f µs of the node's CPU per request, %.0f of them the agent's", node, agent)
}
