package launcher

import (
	"bytes"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// reaper is the helper's child-subreaper duty: processes of a launched tree
// whose parent dies are reparented to the helper, which must reap them, and
// must find them again to end them when the command exits.
//
// The helper may start other children (os/exec) that their own code waits
// for, so the reaper reaps by pid only processes known to be in a tree:
// descendants it has seen (it scans /proc on every SIGCHLD and every second)
// and children that carry more seccomp filters than the helper itself, which
// only a launched tree's processes do.
type reaper struct {
	mu         sync.Mutex
	trees      map[int]*Tree  // by command pid
	ending     map[*Tree]bool // exited commands whose trees endTree is ending
	foreign    map[int]uint64 // the helper's own children that carry a filter (Foreign)
	ownFilters int
	wake       chan struct{}
	guard      *guard // nil when it could not be started
}

var (
	reaperOnce sync.Once
	reaperInst *reaper
	reaperErr  error
)

func theReaper() (*reaper, error) {
	reaperOnce.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			reaperErr = os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", err)
			return
		}
		r := &reaper{trees: map[int]*Tree{}, ending: map[*Tree]bool{}, foreign: map[int]uint64{}, wake: make(chan struct{}, 1)}
		r.ownFilters = seccompFilters(os.Getpid())
		r.guard, _ = startGuard()
		reaperInst = r
		go r.run()
	})
	return reaperInst, reaperErr
}

func theReaperNow() *reaper { return reaperInst }

func (r *reaper) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reaper) run() {
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, unix.SIGCHLD)
	tick := time.NewTicker(time.Second)
	for {
		select {
		case <-sigchld:
		case <-r.wake:
		case <-tick.C:
			// Ticks only keep memberships current; SIGCHLD does the reaping.
			r.mu.Lock()
			idle := len(r.trees) == 0
			r.mu.Unlock()
			if idle {
				continue
			}
		}
		r.scan()
	}
}

// procInfo is one line of /proc/<pid>/stat.
type procInfo struct {
	ppid  int
	state byte
	start uint64 // start time in clock ticks since boot: tells reused pids apart
}

func readStat(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	// The command name may contain anything: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 {
		return procInfo{}, false
	}
	ppid, _ := strconv.Atoi(string(f[1]))
	start, _ := strconv.ParseUint(string(f[19]), 10, 64)
	return procInfo{ppid: ppid, state: f[0][0], start: start}, true
}

// snapshot reads every process's parent.
func snapshot() map[int]procInfo {
	ents, _ := os.ReadDir("/proc")
	procs := make(map[int]procInfo, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if info, ok := readStat(pid); ok {
			procs[pid] = info
		}
	}
	return procs
}

// seccompFilters reads Seccomp_filters from /proc/<pid>/status.
func seccompFilters(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("Seccomp_filters:")); ok {
			n, _ := strconv.Atoi(string(bytes.TrimSpace(v)))
			return n
		}
	}
	return 0
}

// scan updates tree memberships from a /proc snapshot and reaps the tree
// processes that have exited.
func (r *reaper) scan() {
	procs := snapshot()
	self := os.Getpid()
	r.mu.Lock()
	defer r.mu.Unlock()
	children := map[int][]int{}
	for pid, info := range procs {
		children[info.ppid] = append(children[info.ppid], pid)
	}
	for _, t := range r.trees {
		t.track(procs, children)
	}
	for pid, info := range procs {
		if info.ppid != self || info.state != 'Z' {
			continue
		}
		if t := r.trees[pid]; t != nil {
			var ws unix.WaitStatus
			if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil && got == pid {
				t.status = ws
				delete(r.trees, pid)
				r.ending[t] = true
				close(t.exited)
			}
			continue
		}
		if r.inTree(pid, info) {
			unix.Wait4(pid, nil, unix.WNOHANG, nil)
		}
	}
	r.updateGuard()
}

// updateGuard sends the guard the members of every tree still running or
// being ended. Call it with r.mu held.
func (r *reaper) updateGuard() {
	trees := make([]*Tree, 0, len(r.trees)+len(r.ending))
	for _, t := range r.trees {
		trees = append(trees, t)
	}
	for t := range r.ending {
		trees = append(trees, t)
	}
	r.guard.update(trees)
}

func (r *reaper) inTree(pid int, info procInfo) bool {
	for _, t := range r.trees {
		if start, ok := t.members[pid]; ok && start == info.start {
			return true
		}
	}
	// Exited trees are gone from r.trees: the filter count tells.
	return !r.isForeign(pid, info.start) && seccompFilters(pid) > r.ownFilters
}

func (r *reaper) isForeign(pid int, start uint64) bool {
	s, ok := r.foreign[pid]
	return ok && s == start
}

// Foreign tells the reaper that pid, a child the helper started and waits
// for itself (a preloaded command), is in no tree although it may carry a
// filter. Without it the reaper could take it for an orphan of a tree.
func Foreign(pid int) {
	info, ok := readStat(pid)
	if !ok {
		return
	}
	r, err := theReaper()
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, start := range r.foreign {
		if i, ok := readStat(p); !ok || i.start != start {
			delete(r.foreign, p)
		}
	}
	r.foreign[pid] = info.start
}

// track adds the live descendants of t's command and of its known members to
// t.members and forgets members that are gone.
func (t *Tree) track(procs map[int]procInfo, children map[int][]int) {
	for pid, start := range t.members {
		if info, ok := procs[pid]; !ok || info.start != start {
			delete(t.members, pid)
		}
	}
	queue := []int{t.Pid}
	for pid := range t.members {
		queue = append(queue, pid)
	}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if _, seen := t.members[c]; !seen {
				t.members[c] = procs[c].start
				queue = append(queue, c)
			}
		}
	}
}

// endTree ends what is left of t after its command exited: the members it
// tracked, and the helper's children that carry the filter while no other
// tree runs (orphans whose parent died between two scans).
func (r *reaper) endTree(t *Tree, grace time.Duration) {
	self := os.Getpid()
	deadline := time.Now().Add(grace)
	termed := map[int]bool{}
	for round := 0; round < 1000; round++ {
		procs := snapshot()
		children := map[int][]int{}
		for pid, info := range procs {
			children[info.ppid] = append(children[info.ppid], pid)
		}
		r.mu.Lock()
		t.track(procs, children)
		if len(r.trees) == 0 {
			for pid, info := range procs {
				if _, ok := t.members[pid]; !ok && info.ppid == self && !r.isForeign(pid, info.start) && seccompFilters(pid) > r.ownFilters {
					t.members[pid] = info.start
				}
			}
		}
		alive := 0
		for pid, start := range t.members {
			info := procs[pid]
			if info.state == 'Z' {
				if info.ppid == self {
					unix.Wait4(pid, nil, unix.WNOHANG, nil)
				}
				continue
			}
			if info.start != start {
				continue
			}
			alive++
			if !termed[pid] {
				unix.Kill(pid, unix.SIGTERM)
				termed[pid] = true
			} else if time.Now().After(deadline) {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		if alive == 0 {
			delete(r.ending, t)
			r.updateGuard()
			r.mu.Unlock()
			return
		}
		r.updateGuard()
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	r.mu.Lock()
	delete(r.ending, t)
	r.updateGuard()
	r.mu.Unlock()
}
