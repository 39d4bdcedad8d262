// Package tools installs the debuggers the test suites drive, at pinned
// versions, into the cache the Makefile's tools share.
package tools

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DelveVersion is the Delve release the suites run.
const DelveVersion = "v1.27.2"

// Delve returns the dlv binary at DelveVersion, installing it with `go
// install` into ~/.cache/doppel/tools when it is missing or another version.
func Delve() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(home, ".cache", "doppel", "tools")
	bin := filepath.Join(dir, "dlv")
	if out, err := exec.Command(bin, "version").Output(); err == nil && strings.Contains(string(out), strings.TrimPrefix(DelveVersion, "v")) {
		return bin, nil
	}
	cmd := exec.Command("go", "install", "github.com/go-delve/delve/cmd/dlv@"+DelveVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("installing delve %s: %v\n%s", DelveVersion, err, out)
	}
	return bin, nil
}
