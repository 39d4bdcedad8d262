// Package cluster is what the benchmarks against the local cluster share:
// kubectl, the agent image's name, a namespace of their own, and failing
// with a message.
package cluster

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

var (
	kubectl = flag.String("kubectl", filepath.Join(os.Getenv("HOME"), ".cache/doppel/bin/kubectl"), "kubectl binary")
	image   = flag.String("agent-image", "", "agent image (default: doppel-agent:<git describe>, as make image tags it)")
)

// AgentImage is -agent-image, or the tag `make image` gives this checkout.
// Call it after flag.Parse.
func AgentImage() (string, error) {
	if *image != "" {
		return *image, nil
	}
	out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "", fmt.Errorf("git describe: %w (pass -agent-image)", err)
	}
	return "doppel-agent:" + strings.TrimSpace(string(out)), nil
}

// K runs kubectl and returns its stdout, or an error with its stderr.
func K(args ...string) (string, error) { return KIn("", args...) }

// KIn runs kubectl with stdin.
func KIn(stdin string, args ...string) (string, error) {
	cmd := exec.Command(*kubectl, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}

// Main parses the flags and calls run with the agent image, in namespace,
// created for it and deleted afterwards; an error fails the program.
func Main(namespace string, run func(agentImage string) error) {
	flag.Parse()
	image, err := AgentImage()
	if err != nil {
		Fail(err)
	}
	err = func() error {
		if _, err := K("create", "namespace", namespace); err != nil {
			return err
		}
		defer K("delete", "namespace", namespace, "--wait=false")
		return run(image)
	}()
	if err != nil {
		Fail(err)
	}
}

// Fail prints err and exits 1.
func Fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// Kubectl is the kubectl binary (-kubectl).
func Kubectl() string { return *kubectl }
