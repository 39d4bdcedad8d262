package guardian

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

const testEnv = "DOPPEL_TEST_GUARDIAN"

type testJob struct{ Out string }

// TestMain: the test binary re-executed by Start is the guardian, which
// writes what it was told to the job's file.
func TestMain(m *testing.M) {
	MaybeRun(testEnv, func(job []byte, wait func() bool) int {
		var j testJob
		if err := json.Unmarshal(job, &j); err != nil {
			return 2
		}
		what := "goodbye"
		if wait() {
			what = "undo"
		}
		if err := os.WriteFile(j.Out, []byte(what), 0o644); err != nil {
			return 1
		}
		return 0
	})
	os.Exit(m.Run())
}

func start(t *testing.T) (*Process, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	p, err := Start(testEnv, []string{"doppel-test-guardian"}, testJob{Out: out}, (*exec.Cmd).Start)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(true) })
	if _, err := os.Stat(out); err == nil {
		t.Fatal("the guardian acted before being told")
	}
	return p, out
}

func result(t *testing.T, p *Process, out string) string {
	t.Helper()
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("the guardian did not exit")
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGoodbyeLeavesQuietly(t *testing.T) {
	p, out := start(t)
	p.Stop(true)
	if got := result(t, p, out); got != "goodbye" {
		t.Errorf("after a goodbye the guardian did %q", got)
	}
}

// The pipe closing without a goodbye is what the agent's death looks like.
func TestAgentGoneUndoes(t *testing.T) {
	p, out := start(t)
	p.Stop(false)
	if got := result(t, p, out); got != "undo" {
		t.Errorf("after the agent's end the guardian did %q", got)
	}
}

func TestSIGTERMUndoes(t *testing.T) {
	p, out := start(t)
	if err := syscall.Kill(p.PID(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := result(t, p, out); got != "undo" {
		t.Errorf("after SIGTERM the guardian did %q", got)
	}
}

// SIGINT (a terminal's ^C for the agent) is not the guardian's business.
func TestSIGINTIgnored(t *testing.T) {
	p, out := start(t)
	if err := syscall.Kill(p.PID(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
		t.Fatal("the guardian exited on SIGINT")
	case <-time.After(300 * time.Millisecond):
	}
	p.Stop(true)
	if got := result(t, p, out); got != "goodbye" {
		t.Errorf("the guardian did %q", got)
	}
}

// A binary that does not call MaybeRun first never says it is ready.
func TestStartWithoutMaybeRun(t *testing.T) {
	_, err := Start("DOPPEL_TEST_NOBODY_LISTENS", []string{"x", "-test.list=^$"}, testJob{}, (*exec.Cmd).Start)
	if err == nil {
		t.Fatal("Start succeeded though nothing became a guardian")
	}
}
