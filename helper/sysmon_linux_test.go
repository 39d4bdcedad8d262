package main

import (
	"os"
	"strings"
	"testing"
)

// The executed-again helper gives its children the user's GODEBUG, or
// none, whatever it runs with itself.
func TestKeepSysmonAwakeRestoresGODEBUG(t *testing.T) {
	for _, tc := range []struct {
		marker, want string
		set          bool
	}{
		{"-", "", false},
		{"=", "", true},
		{"=http2client=0", "http2client=0", true},
	} {
		t.Setenv("GODEBUG", sysmonSchedTrace)
		t.Setenv(envSysmon, tc.marker)
		keepSysmonAwake() // returns: no second exec
		got, set := os.LookupEnv("GODEBUG")
		if got != tc.want || set != tc.set {
			t.Errorf("marker %q: GODEBUG %q (set %v), want %q (set %v)", tc.marker, got, set, tc.want, tc.set)
		}
		if _, ok := os.LookupEnv(envSysmon); ok {
			t.Errorf("marker %q: %s left in the environment", tc.marker, envSysmon)
		}
	}
}

func TestSubcommandRelaying(t *testing.T) {
	for args, want := range map[string]string{
		"exec -- curl":                "exec",
		"--context kind exec -- curl": "exec",
		"ide":                         "ide",
		"wrap -- dlv exec ./x":        "wrap",
		"version":                     "",
		"ls -A":                       "",
		"cleanup -- exec":             "",
	} {
		if got := subcommand(strings.Fields(args)); got != want {
			t.Errorf("subcommand(%q) = %q, want %q", args, got, want)
		}
	}
}
