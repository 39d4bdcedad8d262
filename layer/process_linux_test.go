package layer

import (
	"os"
	"testing"
	"time"
)

// A trapped call of another thread between an execve's notification and
// the exec itself reads the old identity: it must not be taken for the new
// program's, which is read again on the next call.
func TestRefreshBeforeTheExecHappened(t *testing.T) {
	old := execSettle
	execSettle = 200 * time.Millisecond
	t.Cleanup(func() { execSettle = old })
	asked := 0
	tab := newProcessTable(func(Process) bool { asked++; return false })
	defer tab.close()
	pid := os.Getpid()
	p, err := tab.get(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer p.release()

	tab.execing(pid)
	tab.get(pid) // a call before the exec: this process runs the same program still
	if !p.stale.Load() {
		t.Fatal("the identity read before the exec happened was kept as the new program's")
	}
	// The exec happens: the next call reads the new identity, once.
	tab.mu.Lock()
	p.Process.Exe = "/the/program/before/the/exec"
	tab.mu.Unlock()
	before := asked
	tab.get(pid)
	if p.stale.Load() || asked != before+1 {
		t.Fatalf("after the exec: stale=%v, skip asked %d times, want once", p.stale.Load(), asked-before)
	}
	if exe, _ := os.Executable(); p.Exe != exe {
		t.Errorf("identity %q, want %q", p.Exe, exe)
	}

	// An exec that failed leaves the old identity: read again only until
	// execSettle has passed.
	tab.execing(pid)
	tab.get(pid)
	time.Sleep(execSettle)
	tab.get(pid)
	if p.stale.Load() {
		t.Error("still re-read after execSettle")
	}
}
