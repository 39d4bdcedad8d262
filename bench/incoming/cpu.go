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

// cpuCost is what a load cost per request, in µs: the node's CPU, and
// the agents' share of it.
type cpuCost struct{ node, agent float64 }

func (c cpuCost) String() string {
	return fmt.Sprintf("%.0f µs of the node's CPU per request, %.0f of them the agent's", c.node, c.agent)
}

// withCPU runs load and returns its result with the CPU it cost per
// request it got answered.
func withCPU(load func() (loadResult, error)) (loadResult, cpuCost, error) {
	before := sampleCPU()
	res, err := load()
	after := sampleCPU()
	if err != nil || res.OK <= 0 {
		return res, cpuCost{}, err
	}
	n := float64(res.OK)
	return res, cpuCost{node: (after.node - before.node) * 1e6 / n, agent: (after.agent - before.agent) * 1e6 / n}, nil
}
