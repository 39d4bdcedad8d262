// Command doppel runs a local process as if it ran inside a Kubernetes pod.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"

	"github.com/doppel-dev/doppel/helper/cli"
	"github.com/doppel-dev/doppel/helper/session"
	"github.com/doppel-dev/doppel/layer/launcher"
)

func main() {
	// In the hidden launcher mode this installs the layer and execs the
	// command; otherwise it returns at once.
	launcher.Main()
	// Before anything else runs: this may execute doppel again.
	keepSysmonAwake()
	// The pause's lease guardian is this binary too (docs/pause.md).
	session.MaybeRunLeaseGuardian()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()}))
	defer cpuProfile(logger)()
	cmd := cli.NewCommand(cli.Deps{Logger: logger, Streams: cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}})
	if err := cmd.Execute(); err != nil {
		var exit cli.ExitError
		code := 1
		if !errors.As(err, &exit) {
			fmt.Fprintf(os.Stderr, "doppel: %v\n", err)
		} else {
			code = exit.Code
		}
		stopProfile()
		os.Exit(code)
	}
}

// stopProfile ends a CPU profile started by cpuProfile (os.Exit skips defers).
var stopProfile = func() {}

// cpuProfile writes a CPU profile of this process to DOPPEL_CPUPROFILE/doppel-PID.pprof
// when that variable names a directory: a developer's switch for the benchmarks.
func cpuProfile(logger *slog.Logger) func() {
	dir := os.Getenv("DOPPEL_CPUPROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, "doppel-"+strconv.Itoa(os.Getpid())+".pprof"))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		logger.Warn("DOPPEL_CPUPROFILE: not profiling", "err", err)
		return func() {}
	}
	stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
	return stopProfile
}

// logLevel is DOPPEL_LOG (debug, info, warn or error), warn when unset or
// not a level.
func logLevel() slog.Level {
	level := slog.LevelWarn
	if v := os.Getenv("DOPPEL_LOG"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			fmt.Fprintf(os.Stderr, "doppel: DOPPEL_LOG=%q is not a level (debug, info, warn, error); using warn\n", v)
			level = slog.LevelWarn
		}
	}
	return level
}
