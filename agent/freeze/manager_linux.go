//go:build linux

package freeze

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/doppel-dev/doppel/agent/guardian"
)

// Manager freezes the target while at least one session holds a pause,
// and thaws it when the last holder lets go, when the agent closes it, or
// — through the guardian — when the agent dies.
type Manager struct {
	find func() (*Freezer, error)
	proc string
	log  *slog.Logger
	// Guardian runs the guardian (off in tests that only count).
	Guardian bool

	mu       sync.Mutex
	freezer  *Freezer
	holders  map[string]time.Time
	frozen   bool // until a thaw succeeds: the last holder's may fail
	frozenAt time.Time
	guard    *guardian.Process
}

// NewManager returns the pause manager of the target process pid, as the
// agent sees it under proc ("/proc").
func NewManager(proc string, pid int, log *slog.Logger) *Manager {
	m := newManager(func() (*Freezer, error) { return FindFreezer(proc, pid) }, log)
	m.proc, m.Guardian = proc, true
	return m
}

func newManager(find func() (*Freezer, error), log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{find: find, log: log, holders: map[string]time.Time{}}
}

// Status is what a session learns about the pause.
type Status struct {
	Frozen  bool
	Holders int
	// Since is when the target was frozen.
	Since time.Time
	// Cgroup is the freezer's directory, for people.
	Cgroup string
}

// Hold adds session as a holder; the first one freezes the target (and
// starts the guardian first, so that no moment exists in which the target
// is frozen and nobody would thaw it).
func (m *Manager) Hold(ctx context.Context, session string) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.holders[session]; ok || len(m.holders) > 0 {
		m.holders[session] = time.Now()
		return m.status(), nil
	}
	if m.freezer == nil {
		f, err := m.find()
		if err != nil {
			return Status{}, err
		}
		m.freezer = f
	}
	if m.Guardian && m.guard == nil {
		g, err := startGuardian(m.proc, m.freezer)
		if err != nil {
			return Status{}, err
		}
		m.guard = g
	}
	if err := m.freezer.Freeze(ctx); err != nil {
		// Half frozen helps nobody.
		if terr := m.freezer.Thaw(); terr != nil {
			err = errors.Join(err, terr)
		}
		m.stopGuardian()
		return Status{}, err
	}
	m.holders[session] = time.Now()
	m.frozen = true
	m.frozenAt = time.Now()
	m.log.Info("froze the target", "cgroup", m.freezer.Dir, "v2", m.freezer.V2, "session", session)
	return m.status(), nil
}

// Release drops session as a holder (unknown sessions are ignored); the
// last one thaws the target.
func (m *Manager) Release(session string) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.holders[session]; !ok {
		return m.status(), nil
	}
	delete(m.holders, session)
	if len(m.holders) > 0 {
		return m.status(), nil
	}
	err := m.freezer.Thaw()
	if err == nil {
		m.frozen = false
		m.log.Info("thawed the target: its last pausing session ended", "session", session, "frozen_for", time.Since(m.frozenAt).Round(time.Millisecond))
		m.stopGuardian()
	}
	// On an error the target stays frozen with nobody holding it: Close,
	// and the guardian after it, thaw it still.
	return m.status(), err
}

// Holders returns the sessions holding the pause, sorted.
func (m *Manager) Holders() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.holders))
	for s := range m.holders {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Close thaws the target if it is frozen and lets the guardian go.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var err error
	m.holders = map[string]time.Time{}
	if m.frozen {
		if err = m.freezer.Thaw(); err == nil {
			m.frozen = false
			m.log.Info("thawed the target: the agent is stopping")
		}
	}
	if m.guard != nil {
		m.guard.Stop(err == nil) // on an error, the guardian tries too
		m.guard = nil
	}
	return err
}

func (m *Manager) status() Status {
	s := Status{Frozen: m.frozen, Holders: len(m.holders)}
	if s.Frozen {
		s.Since = m.frozenAt
	}
	if m.freezer != nil {
		s.Cgroup = m.freezer.Dir
	}
	return s
}

func (m *Manager) stopGuardian() {
	if m.guard != nil {
		m.guard.Stop(true)
		m.guard = nil
	}
}

// The guardian (package guardian) thaws the target when the agent dies,
// even by SIGKILL, or on SIGTERM.

const guardianEnv = "DOPPEL_FREEZE_GUARDIAN"

type guardianSpec struct {
	Dir  string `json:"dir"`
	V2   bool   `json:"v2"`
	Proc string `json:"proc,omitempty"`
}

func startGuardian(proc string, f *Freezer) (*guardian.Process, error) {
	g, err := guardian.Start(guardianEnv, []string{"doppel-freeze-guardian", f.Dir},
		guardianSpec{Dir: f.Dir, V2: f.V2, Proc: proc}, (*exec.Cmd).Start)
	if err != nil {
		return nil, fmt.Errorf("freeze: %w", err)
	}
	return g, nil
}

// GuardianPID returns the running guardian's PID, 0 if none (tests).
func (m *Manager) GuardianPID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.guard == nil {
		return 0
	}
	return m.guard.PID()
}

// MaybeRunGuardian turns this process into a pause guardian if it was
// started as one, and exits; otherwise it returns at once. The agent's
// main calls it first thing.
func MaybeRunGuardian() { guardian.MaybeRun(guardianEnv, runGuardian) }

func runGuardian(job []byte, wait func() bool) int {
	var spec guardianSpec
	if err := json.Unmarshal(job, &spec); err != nil {
		fmt.Fprintln(os.Stderr, "doppel-freeze-guardian: bad job:", err)
		return 2
	}
	// When the agent container's main process dies, the runtime kills
	// every process left in the container's cgroup: leave it first, so
	// that the thaw never races that kill.
	if spec.Proc != "" {
		if err := escapeCgroups(spec.Proc); err != nil {
			fmt.Fprintln(os.Stderr, "doppel-freeze-guardian: staying in the agent's cgroups:", err)
		}
	}
	if !wait() {
		return 0
	}
	f := &Freezer{Dir: spec.Dir, V2: spec.V2}
	var err error
	for range 50 { // a busy cgroupfs: retry for about a second
		if err = f.Thaw(); err == nil {
			fmt.Fprintln(os.Stderr, "doppel-freeze-guardian: the agent is gone: thawed", spec.Dir)
			return 0
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "doppel-freeze-guardian:", err)
	return 1
}

// escapeCgroups moves this process to the root cgroup of every cgroup
// hierarchy of the node (best effort; errors are joined).
func escapeCgroups(proc string) error {
	mounts, err := os.ReadFile(filepath.Join(proc, "1", "mountinfo"))
	if err != nil {
		return err
	}
	root := filepath.Join(proc, "1", "root")
	pid := []byte(strconv.Itoa(os.Getpid()))
	var errs []error
	seen := map[string]bool{}
	for _, line := range strings.Split(string(mounts), "\n") {
		m, ok := parseMount(line)
		if !ok || (m.fstype != "cgroup" && m.fstype != "cgroup2") || m.root != "/" {
			continue
		}
		key := m.fstype + ":" + strings.Join(m.superOpts, ",")
		if seen[key] {
			continue
		}
		seen[key] = true
		if err := os.WriteFile(filepath.Join(root, m.point, "cgroup.procs"), pid, 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
