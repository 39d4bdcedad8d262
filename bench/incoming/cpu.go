package main

import (
	"fmt"

	"github.com/doppel-dev/doppel/bench/internal/procfs"
)

// The node's CPU, to show where a CPU-bound load's throughput goes: on the
// local cluster the client pod, the target and the agent share the same
// cores, so requests per second at a fixed concurrency follow the CPU
// each request costs.

// cpuSample is the node's busy CPU time and the agents' (all of them on
// this node: the bench's namespace runs one), in seconds.
type cpuSample struct{ node, agent float64 }

func sampleCPU() cpuSample {
	s := cpuSample{node: procfs.NodeBusy()}
	for _, dir := range procfs.Agents() {
		if cpu, err := procfs.CPU(dir); err == nil {
			s.agent += cpu
		}
	}
	return s
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
