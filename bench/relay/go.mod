module github.com/doppel-dev/doppel/bench/relay

go 1.26.0

require (
	github.com/cilium/ebpf v0.22.0
	golang.org/x/sys v0.50.0
)
