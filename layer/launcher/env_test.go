//go:build linux

package launcher

import (
	"slices"
	"testing"
)

// The launcher runs without the command's LD_PRELOAD, and the command gets
// it back unchanged.
func TestLauncherEnvKeepsPreloadAway(t *testing.T) {
	env := []string{"A=1", "LD_PRELOAD=/x/libdoppel.so:/y/other.so", envSpec + "={}"}
	l := launcherEnv(env)
	for _, kv := range l {
		if len(kv) >= 11 && kv[:11] == "LD_PRELOAD=" {
			t.Fatalf("the launcher's env has %s", kv)
		}
	}
	got := commandEnv(append(l, envSpec+"={}"))
	want := []string{"A=1", "LD_PRELOAD=/x/libdoppel.so:/y/other.so"}
	if !slices.Equal(got, want) {
		t.Errorf("command env %q, want %q", got, want)
	}
	if got := commandEnv(launcherEnv([]string{"B=2"})); !slices.Equal(got, []string{"B=2"}) {
		t.Errorf("without LD_PRELOAD: %q", got)
	}
}
