package main

import (
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The helper relays every byte of a session (the port-forward's TLS on one
// side, the process's sockets on the other), and between two reads it is
// often wholly idle. The Go runtime's monitor thread (sysmon) then goes
// into its deep sleep, and the next syscall wakes it, after which it polls
// every 20 µs for a while: a 1 GiB download through a session cost the
// helper 80,000–89,000 context switches and 1.7–2.0 s of CPU. With a
// schedtrace period set, sysmon never deep-sleeps and backs off to a 10 ms
// period instead: 41,000–49,000 switches, 1.3–1.4 s, and 10–15 % more
// throughput (docs/agent.md, "Scheduling"; the agent gets the same setting
// in its pod spec).
//
// The runtime reads schedtrace only at its start, so doppel executes
// itself again with it set, once, and gives its children the GODEBUG the
// user had. The period is the largest there is, 2^31-1 ms, so that it never
// prints: the runtime prints its first line once the monotonic clock (time
// since boot) passes one period, which is why machines up for more than
// sysmonMaxUptime go without.

const (
	sysmonSchedTrace = "schedtrace=2147483647"
	// sysmonMaxUptime leaves a session started just below it 0.8 days
	// before a trace line could print.
	sysmonMaxUptime = 24 * 24 * time.Hour
	// envSysmon marks the executed-again helper; its value is the user's
	// GODEBUG after a '=' ("=" + value), or "-" when there was none.
	envSysmon = "DOPPEL_SYSMON_GODEBUG"
)

// relaying names the subcommands that carry a session's traffic; the
// others (and the lease guardian, mostly idle) end soon or wait, and an
// awake sysmon would only cost them its 10 ms wake-ups.
var relaying = map[string]bool{"exec": true, "ide": true, "wrap": true}

// keepSysmonAwake executes doppel again with sysmonSchedTrace for a
// relaying subcommand, unless it is that execution (then it restores the
// user's GODEBUG for the children) or the machine has been up too long. A
// failed exec changes nothing.
func keepSysmonAwake() {
	if v, ok := os.LookupEnv(envSysmon); ok {
		os.Unsetenv(envSysmon)
		if orig, had := strings.CutPrefix(v, "="); had {
			os.Setenv("GODEBUG", orig)
		} else {
			os.Unsetenv("GODEBUG")
		}
		return
	}
	if !relaying[subcommand(os.Args[1:])] || os.Getenv("DOPPEL_SYSMON") == "off" || uptime() >= sysmonMaxUptime {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	orig, had := os.LookupEnv("GODEBUG")
	marker, godebug := "-", sysmonSchedTrace
	if had {
		marker = "=" + orig
		if orig != "" {
			godebug = orig + "," + sysmonSchedTrace
		}
	}
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	env = append(env, "GODEBUG="+godebug, envSysmon+"="+marker)
	syscall.Exec(exe, os.Args, env)
}

// subcommand is the first of args that names a relaying subcommand, before
// a "--" (the root's flags may come first), or "".
func subcommand(args []string) string {
	for _, a := range args {
		if a == "--" {
			break
		}
		if relaying[a] {
			return a
		}
	}
	return ""
}

// uptime is the monotonic clock, the runtime's clock for schedtrace.
func uptime() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return sysmonMaxUptime // unknown: don't
	}
	return time.Duration(ts.Nano())
}
