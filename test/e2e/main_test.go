//go:build e2e

// Package e2e is the end-to-end suite against a real cluster: the local one
// from hack/cluster (make test), or the one KUBECONFIG names with
// DOPPEL_USE_EXISTING_CLUSTER=1. One file per user-visible feature.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/doppel-dev/doppel/test/e2e/framework"
)

var cluster *framework.Cluster

func TestMain(m *testing.M) {
	c, err := framework.Connect()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	cluster = c
	os.Exit(m.Run())
}
