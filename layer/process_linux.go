package layer

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

// process is what the supervisor keeps per thread group: its identity, the
// Skip decision and a pidfd for pidfd_getfd. Reads from /proc happen once
// per process, never per notification.
type process struct {
	Process
	skip  bool
	stale atomic.Bool // set by execve: identity and skip are re-read on next use
	// execAt is when an execve was last seen (unix ns), 0 once a refresh
	// read the new identity.
	execAt atomic.Int64
	pidfd  int
	refs   atomic.Int32 // users of pidfd, plus one for the table while present
}

func (p *process) release() {
	if p.refs.Add(-1) == 0 {
		unix.Close(p.pidfd)
	}
}

// processTable caches processes by tgid and thread ids by tid.
type processTable struct {
	skip func(Process) bool

	mu     sync.Mutex
	byTgid map[int]*process
	tgidOf map[int]int // tid -> tgid, for threads other than the leader
}

func newProcessTable(skip func(Process) bool) *processTable {
	return &processTable{skip: skip, byTgid: map[int]*process{}, tgidOf: map[int]int{}}
}

// get returns the process of thread tid with a reference the caller must
// release. Its Process.TID is tid.
func (t *processTable) get(tid int) (*process, error) {
	t.mu.Lock()
	tgid := tid
	if tg, ok := t.tgidOf[tid]; ok {
		tgid = tg
	}
	p := t.byTgid[tgid]
	if p != nil {
		p.refs.Add(1)
	}
	t.mu.Unlock()
	if p == nil {
		var err error
		if p, err = t.load(tid); err != nil {
			return nil, err
		}
	} else if p.stale.Load() {
		t.refresh(p)
	}
	return p, nil
}

func (t *processTable) load(tid int) (*process, error) {
	tgid, err := readTgid(tid)
	if err != nil {
		return nil, err
	}
	pidfd, err := unix.PidfdOpen(tgid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", tgid, err)
	}
	p := &process{Process: Process{PID: tgid}, pidfd: pidfd}
	p.refs.Store(2) // the table's and the caller's
	t.refresh(p)

	t.mu.Lock()
	defer t.mu.Unlock()
	if tid != tgid {
		t.tgidOf[tid] = tgid
	}
	if q := t.byTgid[tgid]; q != nil {
		// Another thread of the process got here first: use its entry.
		q.refs.Add(1)
		unix.Close(pidfd)
		return q, nil
	}
	t.byTgid[tgid] = p
	return p, nil
}

// execSettle is how long after an execve's notification a refresh that
// still reads the old identity is taken for one that came before the exec
// happened, and is read again on the next call.
var execSettle = time.Second

// refresh reads the identity again (after execve) and asks Skip. Concurrent
// refreshes of one process read the same values, so the race is harmless.
func (t *processTable) refresh(p *process) {
	execAt := p.execAt.Load()
	p.stale.Store(false)
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID))
	var args []string
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID)); err == nil {
		args = strings.Split(string(bytes.TrimSuffix(b, []byte{0})), "\x00")
	}
	id := Process{PID: p.PID, TID: p.PID, Exe: exe, Args: args}
	skip := t.skip(id)
	t.mu.Lock()
	same := p.Exe == id.Exe && slices.Equal(p.Args, id.Args)
	p.Process, p.skip = id, skip
	t.mu.Unlock()
	if execAt == 0 {
		return
	}
	if same && time.Since(time.Unix(0, execAt)) < execSettle {
		// Another thread's call between the execve's notification and the
		// exec itself: the new program would keep the old identity.
		p.stale.Store(true)
		return
	}
	p.execAt.CompareAndSwap(execAt, 0)
}

// snapshot returns p's identity for thread tid.
func (t *processTable) snapshot(p *process, tid int) (Process, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := p.Process
	id.TID = tid
	return id, p.skip
}

// execing marks the process of tid for a fresh identity. The exec has not
// happened yet when the notification arrives; a call another thread makes in
// the microseconds before it does is judged by the old identity, and the
// identity is read again until it changes (or execSettle passes: the exec
// failed, or ran the same program with the same arguments).
func (t *processTable) execing(tid int) {
	t.mu.Lock()
	tgid := tid
	if tg, ok := t.tgidOf[tid]; ok {
		tgid = tg
	}
	p := t.byTgid[tgid]
	t.mu.Unlock()
	if p != nil {
		p.execAt.Store(time.Now().UnixNano())
		p.stale.Store(true)
	}
}

// sweep forgets processes that have exited and threads that are gone, so
// that reused ids are looked up afresh.
func (t *processTable) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tgid, p := range t.byTgid {
		fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 0); n > 0 {
			delete(t.byTgid, tgid)
			p.release()
		}
	}
	for tid, tgid := range t.tgidOf {
		if _, ok := t.byTgid[tgid]; !ok {
			delete(t.tgidOf, tid)
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", tgid, tid)); err != nil {
			delete(t.tgidOf, tid)
		}
	}
}

func (t *processTable) sweepEvery(d time.Duration, done <-chan struct{}) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			t.sweep()
		}
	}
}

func (t *processTable) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tgid, p := range t.byTgid {
		delete(t.byTgid, tgid)
		p.release()
	}
}

// readTgid maps a thread id to its process from /proc/<tid>/status.
func readTgid(tid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("Tgid:")); ok {
			return strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	return 0, fmt.Errorf("no Tgid in /proc/%d/status", tid)
}

// getFD duplicates fd of p into the supervisor.
func (p *process) getFD(fd int) (int, error) { return seccomp.GetFD(p.pidfd, fd) }
