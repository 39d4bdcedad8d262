//go:build linux

package redirect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/doppel-dev/doppel/agent/guardian"
)

// iptablesVariants are the pairs of binaries NewIptables tries, in order:
// the first whose IPv4 binary works in the pod's namespace is used.
var iptablesVariants = [][2]string{
	{"iptables", "ip6tables"},
	{"iptables-nft", "ip6tables-nft"},
	{"iptables-legacy", "ip6tables-legacy"},
}

// iptRedirector is the iptables backend: chains NAME-PID-pre and
// NAME-PID-out in the nat table of IPv4 and IPv6, jumped to first from
// PREROUTING and OUTPUT, and a guardian process that removes them when
// this process dies.
type iptRedirector struct {
	mu       sync.Mutex
	ns       Netns
	name     string
	bins     []string // absolute paths: iptables, and ip6tables when present
	pre, out string   // chain names
	listen   uint16
	mark     uint32
	ports    portSet
	closed   bool

	guardian *guardian.Process // removes the chains when this process dies
}

// guardianEnv holds the guardian's job (guardianSpec as JSON) in the
// environment of the re-executed binary.
const guardianEnv = "DOPPEL_REDIRECT_GUARDIAN"

// guardianSpec is what the guardian removes.
type guardianSpec struct {
	Bins []string `json:"bins"`
	Pre  string   `json:"pre"`
	Out  string   `json:"out"`
}

// NewIptables sets up, in ns, the chains NAME-PID-pre and NAME-PID-out
// (name "" is "doppel") in the nat tables of iptables and, when an
// ip6tables binary exists, ip6tables, jumped to first from PREROUTING and
// OUTPUT; then the redirects are rules in those chains. The binaries are
// the agent's (iptables, else iptables-nft, else iptables-legacy: the first
// that works in ns); they run in ns.
//
// First it starts a guardian: this binary re-executed (/proc/self/exe),
// holding a pipe from this process, that removes the chains when the pipe
// closes without a goodbye (this process died, even by SIGKILL) or on
// SIGTERM. The program's main must call MaybeRunGuardian before anything
// else.
func NewIptables(ns Netns, listenPort uint16, mark uint32, name string) (Redirector, error) {
	if err := checkConfig(listenPort, mark); err != nil {
		return nil, err
	}
	base := baseName(name)
	// Chain names have at most 28 characters.
	if len(base) > 24 {
		base = base[len(base)-24:]
	}
	r := &iptRedirector{ns: ns, name: base, pre: base + "-pre", out: base + "-out",
		listen: listenPort, mark: mark}
	var probeErrs []error
	for _, v := range iptablesVariants {
		v4, err := exec.LookPath(v[0])
		if err != nil {
			probeErrs = append(probeErrs, err)
			continue
		}
		if err := r.run(v4, "-t", "nat", "-S", "OUTPUT"); err != nil {
			probeErrs = append(probeErrs, err)
			continue
		}
		r.bins = []string{v4}
		if v6, err := exec.LookPath(v[1]); err == nil {
			r.bins = append(r.bins, v6)
		}
		break
	}
	if r.bins == nil {
		return nil, fmt.Errorf("redirect: no usable iptables: %w", errors.Join(probeErrs...))
	}
	if err := r.startGuardian(); err != nil {
		return nil, err
	}
	var err error
	for _, bin := range r.bins {
		for _, args := range [][]string{
			{"-N", r.pre},
			{"-N", r.out},
			{"-I", "PREROUTING", "1", "-j", r.pre},
			{"-I", "OUTPUT", "1", "-j", r.out},
		} {
			if err = r.run(bin, append([]string{"-t", "nat"}, args...)...); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// run runs an iptables binary with -w 5 and args, in the pod's namespace.
// Only the start is on the namespace thread (the child, forked from it,
// starts in the pod's network namespace): waiting there for iptables'
// lock would hold up every dial and DNS query of the pod meanwhile.
func (r *iptRedirector) run(bin string, args ...string) error {
	cmd, out := iptablesCommand(bin, args...)
	if err := r.ns.InNetns(cmd.Start); err != nil {
		return fmt.Errorf("redirect: %s: %w", bin, err)
	}
	return iptablesResult(cmd, out, cmd.Wait())
}

func runIptables(bin string, args ...string) error {
	cmd, out := iptablesCommand(bin, args...)
	return iptablesResult(cmd, out, cmd.Run())
}

func iptablesCommand(bin string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	var out bytes.Buffer
	cmd := exec.Command(bin, append([]string{"-w", "5"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	return cmd, &out
}

func iptablesResult(cmd *exec.Cmd, out *bytes.Buffer, err error) error {
	if err != nil {
		return fmt.Errorf("redirect: %s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// rules returns the rule specs (without -A/-D CHAIN) for port.
func (r *iptRedirector) rules(port uint16) (pre, out []string) {
	p, l := strconv.Itoa(int(port)), strconv.Itoa(int(r.listen))
	match := []string{"-p", "tcp", "--dport", p, "--tcp-flags", "SYN,ACK", "SYN"}
	target := []string{"-j", "REDIRECT", "--to-ports", l}
	pre = slices.Concat(match, target)
	out = slices.Concat([]string{"-o", "lo"}, match,
		[]string{"-m", "mark", "!", "--mark", "0x" + strconv.FormatUint(uint64(r.mark), 16)}, target)
	return pre, out
}

// change appends (-A) or deletes (-D) the rules of port in every family;
// a failed append undoes the appends before it.
func (r *iptRedirector) change(op string, port uint16) error {
	pre, out := r.rules(port)
	type step struct {
		bin   string
		chain string
		spec  []string
	}
	var done []step
	for _, bin := range r.bins {
		for _, s := range []step{{bin, r.pre, pre}, {bin, r.out, out}} {
			if err := r.run(s.bin, slices.Concat([]string{"-t", "nat", op, s.chain}, s.spec)...); err != nil {
				if op == "-A" {
					for _, d := range done {
						r.run(d.bin, slices.Concat([]string{"-t", "nat", "-D", d.chain}, d.spec)...)
					}
				}
				return err
			}
			done = append(done, s)
		}
	}
	return nil
}

func (r *iptRedirector) Add(port uint16) error {
	if err := checkPort(port, r.listen); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	select {
	case <-r.guardian.Exited():
		return errors.New("redirect: iptables: the guardian process exited; close and start over")
	default:
	}
	if r.ports.has(port) {
		return nil
	}
	if err := r.change("-A", port); err != nil {
		return err
	}
	r.ports = r.ports.with(port)
	return nil
}

func (r *iptRedirector) Remove(port uint16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if !r.ports.has(port) {
		return nil
	}
	if err := r.change("-D", port); err != nil {
		return err
	}
	r.ports = r.ports.without(port)
	return nil
}

func (r *iptRedirector) Ports() []uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint16{}, r.ports...)
}

func (r *iptRedirector) Backend() string { return BackendIptables }

func (r *iptRedirector) Name() string { return r.name }

// Close removes the chains, then lets the guardian go.
func (r *iptRedirector) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.ns.InNetns(func() error { return removeChains(r.bins, r.pre, r.out, false) })
	if r.guardian != nil {
		r.guardian.Stop(err == nil) // clean already, or the guardian tries too
	}
	return err
}

// removeChains deletes the jumps to pre and out (so traffic goes straight
// to the pod's servers again), then the chains, in every family, carrying
// on past errors; it runs in the pod's namespace. With parallel, the
// families are done at once (only where every thread is in the pod's
// namespace: the guardian).
func removeChains(bins []string, pre, out string, parallel bool) error {
	errs := make([]error, len(bins))
	var wg sync.WaitGroup
	for i, bin := range bins {
		f := func() { errs[i] = removeChainsOf(bin, pre, out) }
		if parallel {
			wg.Go(f)
		} else {
			f()
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

func removeChainsOf(bin, pre, out string) error {
	var errs []error
	for _, j := range [][2]string{{"PREROUTING", pre}, {"OUTPUT", out}} {
		// Delete every jump to the chain (one normally) until none is left.
		for range 10 {
			if runIptables(bin, "-t", "nat", "-D", j[0], "-j", j[1]) != nil {
				break
			}
		}
	}
	for _, chain := range []string{pre, out} {
		if err := runIptables(bin, "-t", "nat", "-F", chain); err != nil {
			if !chainMissing(bin, chain) {
				errs = append(errs, err)
			}
			continue
		}
		if err := runIptables(bin, "-t", "nat", "-X", chain); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// chainMissing reports whether the nat table has no chain by that name.
func chainMissing(bin, chain string) bool {
	err := exec.Command(bin, "-w", "5", "-t", "nat", "-S", chain).Run()
	var ee *exec.ExitError
	return errors.As(err, &ee)
}

// startGuardian re-executes this binary as the guardian, from the
// namespace thread (so it runs in the pod's network namespace), and waits
// for it to be ready.
func (r *iptRedirector) startGuardian() error {
	g, err := guardian.Start(guardianEnv, []string{"doppel-redirect-guardian", r.pre, r.out},
		guardianSpec{Bins: r.bins, Pre: r.pre, Out: r.out},
		func(cmd *exec.Cmd) error { return r.ns.InNetns(cmd.Start) })
	if err != nil {
		return fmt.Errorf("redirect: iptables: %w", err)
	}
	r.guardian = g
	return nil
}

// MaybeRunGuardian turns this process into an iptables guardian if it was
// started as one, and then exits; otherwise it returns at once. Programs
// that use NewIptables (or New, which may fall back to it) must call it
// first thing in main, before parsing flags or starting anything:
//
//	func main() {
//		redirect.MaybeRunGuardian()
//		...
//	}
//
// The guardian is this binary re-executed by NewIptables, with its job in
// the environment variable DOPPEL_REDIRECT_GUARDIAN, in the pod's network
// namespace, holding the read end of a pipe from the agent as fd 3. It
// prints "ready" and waits. When the agent closes the Redirector it writes
// a goodbye and the guardian just exits; when the pipe closes without one
// (the agent died, however) or the guardian gets SIGTERM, it removes the
// chains and exits. It ignores SIGINT and SIGHUP.
func MaybeRunGuardian() { guardian.MaybeRun(guardianEnv, runGuardian) }

func runGuardian(job []byte, wait func() bool) int {
	var spec guardianSpec
	if err := json.Unmarshal(job, &spec); err != nil {
		fmt.Fprintln(os.Stderr, "doppel-redirect-guardian: bad job:", err)
		return 2
	}
	if !wait() {
		return 0
	}
	if err := removeChains(spec.Bins, spec.Pre, spec.Out, true); err != nil {
		fmt.Fprintln(os.Stderr, "doppel-redirect-guardian:", err)
		return 1
	}
	return 0
}
