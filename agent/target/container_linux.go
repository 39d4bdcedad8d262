//go:build linux

package target

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// containerID is the part of a pod status containerID after "RUNTIME://":
// containerd, CRI-O and Docker all use 64 hex digits.
var containerID = regexp.MustCompile(`^[0-9a-f]{12,128}$`)

// FindContainer returns the PID of the init process of the container with
// the given ID, as a hostPID agent sees it under proc (normally "/proc").
// id may carry the runtime prefix of a pod status ("containerd://…",
// "cri-o://…", "docker://…").
//
// Every runtime names the container's cgroup after its ID (cgroupfs:
// ".../pod<uid>/<id>", systemd: "cri-containerd-<id>.scope",
// "crio-<id>.scope", "docker-<id>.scope"), in every hierarchy and whatever
// cgroup namespace the reader is in, so a substring match on
// /proc/PID/cgroup needs no runtime socket. The oldest process of that
// cgroup is the container's init: processes started later by `kubectl
// exec` share the cgroup but not the start time.
func FindContainer(proc, id string) (int, error) {
	if i := strings.Index(id, "://"); i >= 0 {
		id = id[i+3:]
	}
	if !containerID.MatchString(id) {
		return 0, fmt.Errorf("target: invalid container id %q: expected hex digits, optionally after RUNTIME://", id)
	}
	entries, err := os.ReadDir(proc)
	if err != nil {
		return 0, fmt.Errorf("target: %w", err)
	}
	needle := []byte(id)
	best, bestStart := 0, uint64(0)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join(proc, e.Name())
		// Processes come and go during the scan: unreadable ones are skipped.
		cg, err := os.ReadFile(filepath.Join(dir, "cgroup"))
		if err != nil || !bytes.Contains(cg, needle) {
			continue
		}
		start, err := startTime(dir)
		if err != nil {
			continue
		}
		if best == 0 || start < bestStart || (start == bestStart && pid < best) {
			best, bestStart = pid, start
		}
	}
	if best == 0 {
		return 0, errors.New("target: no process of container " + id + " is visible: is the agent running with hostPID on the target's node?")
	}
	return best, nil
}

// startTime reads field 22 of /proc/PID/stat (clock ticks since boot).
func startTime(dir string) (uint64, error) {
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	fields := strings.Fields(string(stat[i+1:]))
	const startField = 22 - 3 // fields[0] is field 3 (state)
	if len(fields) <= startField {
		return 0, errors.New("malformed stat")
	}
	return strconv.ParseUint(fields[startField], 10, 64)
}
