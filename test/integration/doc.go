// Package integration is the end-to-end suite of the layer: `doppel exec`
// runs real programs (static and cgo Go, Python, Node, Java, curl, sh)
// against the real doppel-agent serving a network-namespace "pod"
// (package podns). Root is required; the tests fail, not skip, when a
// prerequisite is missing.
//
//	go test -count=1 -tags integration ./test/integration/
package integration
