package launcher

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The tree guard ends what a helper killed with SIGKILL leaves running.
//
// Pdeathsig takes the command with the helper, but not the command's own
// children: they are reparented to init and would run on with every trapped
// call failing (ENOSYS). The guard is a small process of the helper's binary
// in a hidden mode, in a process group of its own (terminal signals don't
// reach it), with the read end of a pipe as its stdin. The reaper writes the
// tree members it tracks to the pipe after each scan; when the pipe reaches
// EOF without the helper's goodbye, the helper is gone and the guard stops
// (SIGSTOP) every member still alive (pid and start time match), stops their
// descendants until none is left to find, kills them all and exits.

// envGuard marks the hidden guard mode.
const envGuard = "DOPPEL_LAYER_GUARD"

// guard is the helper's end of the pipe to its guard process.
type guard struct {
	w    *os.File
	last string // the member line last sent
}

// startGuard starts the guard process. A helper that can't start one still
// works: Pdeathsig ends at least the commands.
func startGuard() (*guard, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe", "doppel-tree-guard")
	// Nothing of the helper's environment: processes are found by what the
	// tests and users put there, and the guard is not the command's.
	cmd.Env = []string{envGuard + "=1"}
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start tree guard: %w", err)
	}
	go cmd.Wait() // reaped by the helper while it lives
	return &guard{w: w}, nil
}

// update sends the members of every tree when they changed. Call it with the
// reaper's lock held.
func (g *guard) update(trees []*Tree) {
	if g == nil {
		return
	}
	var b strings.Builder
	pids := make([]int, 0, len(trees))
	for _, t := range trees {
		if start, ok := t.rootStart(); ok {
			fmt.Fprintf(&b, " %d:%d", t.Pid, start)
		}
		for pid := range t.members {
			pids = append(pids, pid)
		}
		sort.Ints(pids)
		for _, pid := range pids {
			fmt.Fprintf(&b, " %d:%d", pid, t.members[pid])
		}
		pids = pids[:0]
	}
	line := "M" + b.String() + "\n"
	if line == g.last {
		return
	}
	g.last = line
	g.w.Write([]byte(line))
}

// rootStart is the command's start time, read once.
func (t *Tree) rootStart() (uint64, bool) {
	if t.start == 0 {
		info, ok := readStat(t.Pid)
		if !ok || info.state == 'Z' {
			return 0, false
		}
		t.start = info.start
	}
	return t.start, true
}

// runGuard is the guard process: it never returns.
func runGuard() {
	// The helper's process group may get these (a closed terminal): the
	// guard's job starts only when its pipe ends.
	signal.Ignore(unix.SIGINT, unix.SIGQUIT, unix.SIGHUP, unix.SIGTERM, unix.SIGPIPE)
	members := map[int]uint64{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "Q":
			os.Exit(0)
		case strings.HasPrefix(line, "M"):
			members = parseMembers(line[1:])
		}
	}
	endOrphans(members)
	os.Exit(0)
}

func parseMembers(s string) map[int]uint64 {
	m := map[int]uint64{}
	for _, f := range strings.Fields(s) {
		p, st, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		pid, err1 := strconv.Atoi(p)
		start, err2 := strconv.ParseUint(st, 10, 64)
		if err1 == nil && err2 == nil && pid > 1 {
			m[pid] = start
		}
	}
	return m
}

// endOrphans stops the members still alive and, round by round, their
// descendants (stopped processes can't fork or reparent theirs), then kills
// them all.
func endOrphans(members map[int]uint64) {
	stopped := map[int]uint64{}
	for round := 0; round < 100; round++ {
		procs := snapshot()
		found := false
		for pid, start := range members {
			if _, done := stopped[pid]; done {
				continue
			}
			if info, ok := procs[pid]; ok && info.start == start && info.state != 'Z' {
				unix.Kill(pid, unix.SIGSTOP)
				stopped[pid] = start
				found = true
			}
		}
		for pid, info := range procs {
			if _, done := stopped[pid]; done || info.state == 'Z' {
				continue
			}
			if _, parent := stopped[info.ppid]; parent {
				members[pid] = info.start
				found = true
			}
		}
		if !found {
			break
		}
		// SIGSTOP is asynchronous: let it land before looking for children.
		time.Sleep(5 * time.Millisecond)
	}
	for pid, start := range stopped {
		if info, ok := readStat(pid); ok && info.start == start {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
}
