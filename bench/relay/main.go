// Command relay asks: does an in-kernel BPF sockmap relay (sk_skb verdict program
// redirecting each skb to the peer socket's egress) beat a user-space relay in
// Go on round-trip latency and CPU?
//
// Everything runs on 127.0.0.1. The parent process runs the client C and the
// echo/sink server S; the relay runs in a child process (this binary with
// -role relay). Background CPU load ("spin") is another child process that
// exits by itself after -spin-max and is also killed by PID when a
// measurement ends.
//
// It measures a design alternative, not doppel: whether the agent's relay
// hop (BENCHMARKS.md, "The cluster") could move into the kernel. It is a
// module of its own because it needs cilium/ebpf, which doppel does not:
//
//	cd bench/relay && go run . -h
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

var (
	flModes         = flag.String("modes", "direct,go-relay,go-copy,splice-relay,sockmap", "comma-separated relay modes to measure, alternated each round:\n  direct        C connects straight to S (no relay)\n  go-relay      2 goroutines io.Copy(*net.TCPConn,*net.TCPConn) (Go uses splice(2) internally for this)\n  go-copy       2 goroutines copying through a 32 KiB user-space buffer (read/write)\n  splice-relay  2 blocking threads splice(2) socket->pipe(1 MiB)->socket\n  sockmap       BPF SOCKMAP + sk_skb verdict program redirecting to the peer's egress")
	flRounds        = flag.Int("rounds", 3, "rounds; each round runs every mode (order rotated) and every condition")
	flN             = flag.Int("n", 5000, "measured round trips per ping-pong run")
	flWarmup        = flag.Int("warmup", 200, "unmeasured round trips before each ping-pong run")
	flReq           = flag.Int("req", 100, "request size (C->S) in bytes")
	flResp          = flag.Int("resp", 200, "response size (S->C) in bytes")
	flConds         = flag.String("conds", "idle,spin,pair,tput", "conditions: idle = ping-pong alone; spin = ping-pong while a child process spins -spin-n goroutines;\npair = ping-pong while a 2nd ping-pong connection runs through the same relay; tput = one-way bulk transfer of -bytes")
	flBytes         = flag.Int64("bytes", 1<<30, "bytes for the throughput test (C->S, one way)")
	flSpinN         = flag.Int("spin-n", 2, "spinning goroutines in the background-load process (spin condition)")
	flSpinMax       = flag.Duration("spin-max", 2*time.Minute, "hard lifetime limit of the spin process")
	flAttach        = flag.String("attach", "verdict", "sockmap attach mode: verdict (BPF_SK_SKB_VERDICT, no parser), stream-verdict (BPF_SK_SKB_STREAM_VERDICT, no parser),\nparser (BPF_SK_SKB_STREAM_PARSER returning skb->len + STREAM_VERDICT)")
	flFin           = flag.String("fin", "drain", "sockmap half-close propagation when read() on a socket returns 0:\nimmediate = shutdown(peer, SHUT_WR) at once; drain = first wait until TCP_INFO/SIOCOUTQ of the peer show all received bytes were handed to it; none = never")
	flVerify        = flag.Bool("verify", true, "before measuring, check each relay: 16 MiB of random-size chunks echoed both ways, intact, in order, with half-close")
	flExperiments   = flag.String("experiments", "", "extra experiments instead of the benchmark (comma list): fin (sockmap half-close/backlog loss),\nearly (data sent before the sockets are in the sockmap), caps (capabilities needed, via setpriv),\nbackpressure (S sends 512 MiB to a client that does not read for 2 s: how much does the relay buffer?)")
	flTimeout       = flag.Duration("timeout", 60*time.Second, "deadline for any single measurement / connection")
	flMaxTotal      = flag.Duration("max-total", 40*time.Minute, "hard limit for the whole run")
	flVerbose       = flag.Bool("v", false, "verbose relay logging")
	flKick          = flag.Bool("kick", true, "sockmap relay (-watch rdhup): do one recv(MSG_DONTWAIT) right after inserting the sockets, which pushes data queued before insertion through the verdict program")
	flInsertDelay   = flag.Duration("insert-delay", 0, "sockmap relay: sleep this long after connecting B and before inserting A,B into the sockmap (for -experiments early)")
	flRedirectEmpty = flag.Bool("redirect-empty", false, "sockmap: also redirect zero-length skbs (a bare FIN) to the peer (shows the EPIPE problem); default drops them in the BPF program")
	flWatch         = flag.String("watch", "rdhup", "sockmap relay: how user space waits for the end of a connection on a socket in the map:\nrdhup = poll(POLLRDHUP only) then recv(MSG_DONTWAIT); poll = poll(POLLIN|POLLRDHUP) (woken in-kernel once per skb);\nread = blocking recv (returns EAGAIN on every wakeup, retried)")

	// internal
	flRole      = flag.String("role", "", "internal: relay | spin | captest")
	flRelayMode = flag.String("relay-mode", "", "internal: relay mode")
	flTarget    = flag.String("target", "", "internal: relay target address")
	flRelayMax  = flag.Duration("relay-max", 45*time.Minute, "internal: hard lifetime limit of a relay process")
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, `relay: measure round-trip latency, throughput and CPU of TCP relays on 127.0.0.1:
direct (no relay), Go user-space relays, a splice relay and an in-kernel BPF sockmap relay.

Per mode and round: ping-pong (C writes -req bytes, S answers -resp bytes, -n round trips on one
connection) idle / under spinning CPU load / with a 2nd concurrent ping-pong pair, and a one-way
bulk transfer of -bytes with CPU accounting (relay process rusage, kworker threads, whole system).
Needs root (CAP_BPF + CAP_NET_ADMIN) for the sockmap mode.

Examples:
  go run .                                  # full benchmark, 3 rounds
  go run . -modes direct,sockmap -rounds 1 -conds idle
  go run . -experiments fin,early,caps -v   # sockmap FIN/half-close, early data, capabilities

Flags:
`)
		flag.PrintDefaults()
	}
	flag.Parse()
	switch *flRole {
	case "relay":
		runRelay()
		return
	case "spin":
		runSpin()
		return
	case "captest":
		runCaptest()
		return
	}
	go func() {
		time.Sleep(*flMaxTotal)
		fmt.Fprintln(os.Stderr, "max-total reached")
		killChildren()
		os.Exit(2)
	}()
	startServer()
	if *flExperiments != "" {
		for _, e := range strings.Split(*flExperiments, ",") {
			switch e {
			case "fin":
				expFin()
			case "early":
				expEarly()
			case "caps":
				expCaps()
			case "backpressure":
				expBackpressure("go-relay")
				expBackpressure("sockmap")
			default:
				fmt.Fprintf(os.Stderr, "unknown experiment %q\n", e)
			}
		}
		return
	}
	runBench()
}

// ---------------------------------------------------------------- children

var (
	childMu  sync.Mutex
	children = map[int]*exec.Cmd{}
)

func killChildren() {
	childMu.Lock()
	defer childMu.Unlock()
	for pid, c := range children {
		c.Process.Kill() // by PID, only processes we started
		delete(children, pid)
	}
}

func startChild(args ...string) (*exec.Cmd, io.WriteCloser, io.ReadCloser, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	childMu.Lock()
	children[cmd.Process.Pid] = cmd
	childMu.Unlock()
	return cmd, in, out, nil
}

func reapChild(cmd *exec.Cmd, in io.Closer) {
	if in != nil {
		in.Close()
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	childMu.Lock()
	delete(children, cmd.Process.Pid)
	childMu.Unlock()
}

type relayProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	port  int
	ready chan struct{}
	rus   chan time.Duration
	mu    sync.Mutex
}

func startRelay(mode string, extra ...string) (*relayProc, error) {
	args := append([]string{"-role", "relay", "-relay-mode", mode, "-target", serverAddr, "-attach", *flAttach, "-fin", *flFin, "-watch", *flWatch, "-insert-delay", flInsertDelay.String(), "-kick=" + strconv.FormatBool(*flKick), "-redirect-empty=" + strconv.FormatBool(*flRedirectEmpty), "-v=" + strconv.FormatBool(*flVerbose)}, extra...)
	cmd, in, out, err := startChild(args...)
	if err != nil {
		return nil, err
	}
	r := &relayProc{cmd: cmd, in: in, ready: make(chan struct{}, 16), rus: make(chan time.Duration, 1)}
	portCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case "PORT", "ERR":
				portCh <- sc.Text()
			case "READY":
				r.ready <- struct{}{}
			case "RUSAGE":
				u, _ := strconv.ParseInt(f[1], 10, 64)
				s, _ := strconv.ParseInt(f[2], 10, 64)
				r.rus <- time.Duration(u + s)
			}
		}
		close(portCh)
	}()
	select {
	case l, ok := <-portCh:
		if !ok || strings.HasPrefix(l, "ERR") {
			reapChild(cmd, in)
			return nil, fmt.Errorf("relay %s failed to start: %s", mode, l)
		}
		r.port, _ = strconv.Atoi(strings.Fields(l)[1])
	case <-time.After(10 * time.Second):
		reapChild(cmd, in)
		return nil, errors.New("relay start timeout")
	}
	return r, nil
}

func (r *relayProc) cpu() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintln(r.in, "RUSAGE")
	select {
	case d := <-r.rus:
		return d
	case <-time.After(5 * time.Second):
		return -1
	}
}

func (r *relayProc) stop() { reapChild(r.cmd, r.in) }

func runSpin() {
	runtime.GOMAXPROCS(*flSpinN)
	deadline := time.Now().Add(*flSpinMax)
	var wg sync.WaitGroup
	for i := 0; i < *flSpinN; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := uint64(1)
			for time.Now().Before(deadline) {
				for j := 0; j < 1_000_000; j++ {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			_ = x
		}()
	}
	wg.Wait()
}

func startSpin() *exec.Cmd {
	cmd, in, _, err := startChild("-role", "spin", "-spin-n", strconv.Itoa(*flSpinN), "-spin-max", flSpinMax.String())
	if err != nil {
		panic(err)
	}
	in.Close()
	time.Sleep(300 * time.Millisecond)
	return cmd
}

func stopSpin(cmd *exec.Cmd) {
	cmd.Process.Kill()
	reapChild(cmd, nil)
}

// ---------------------------------------------------------------- server S

var serverAddr string
var serverSent atomic.Int64 // bytes written by 'D' handlers

func startServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	serverAddr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c.(*net.TCPConn))
		}
	}()
}

func serve(c *net.TCPConn) {
	defer c.Close()
	c.SetNoDelay(true)
	c.SetDeadline(time.Now().Add(*flTimeout + 30*time.Second))
	var hdr [9]byte
	if _, err := io.ReadFull(c, hdr[:1]); err != nil {
		return
	}
	switch hdr[0] {
	case 'P': // ping-pong
		req, resp := make([]byte, *flReq), make([]byte, *flResp)
		for {
			if _, err := io.ReadFull(c, req); err != nil {
				return
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	case 'T': // sink: count until EOF, then report the count
		buf := make([]byte, 256<<10)
		var n int64
		for {
			m, err := c.Read(buf)
			n += int64(m)
			if err != nil {
				break
			}
		}
		binary.LittleEndian.PutUint64(hdr[1:], uint64(n))
		c.Write(hdr[1:])
	case 'D': // source: send N bytes then half-close, wait for EOF
		if _, err := io.ReadFull(c, hdr[1:]); err != nil {
			return
		}
		n := int64(binary.LittleEndian.Uint64(hdr[1:]))
		buf := make([]byte, 64<<10)
		for n > 0 {
			m := min(n, int64(len(buf)))
			if _, err := c.Write(buf[:m]); err != nil {
				return
			}
			serverSent.Add(m)
			n -= m
		}
		c.CloseWrite()
		io.Copy(io.Discard, c)
	case 'V': // echo until EOF, then half-close
		io.CopyBuffer(writerOnly{c}, readerOnly{c}, make([]byte, 7919))
		c.CloseWrite()
	}
}

// ---------------------------------------------------------------- client C

func dial(mode string, r *relayProc, waitReady bool) (*net.TCPConn, error) {
	addr := serverAddr
	if mode != "direct" {
		addr = fmt.Sprintf("127.0.0.1:%d", r.port)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	tc.SetNoDelay(true)
	tc.SetDeadline(time.Now().Add(*flTimeout))
	if mode != "direct" && waitReady {
		select {
		case <-r.ready:
		case <-time.After(10 * time.Second):
			c.Close()
			return nil, errors.New("relay not READY")
		}
	}
	return tc, nil
}

func pingPong(c *net.TCPConn, n, warmup int, stop *atomic.Bool) ([]time.Duration, error) {
	if _, err := c.Write([]byte{'P'}); err != nil {
		return nil, err
	}
	req, resp := make([]byte, *flReq), make([]byte, *flResp)
	lat := make([]time.Duration, 0, min(n, 1<<20))
	for i := 0; i < warmup+n; i++ {
		if stop != nil && stop.Load() {
			break
		}
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			return lat, err
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			return lat, err
		}
		if i >= warmup {
			lat = append(lat, time.Since(t0))
		}
	}
	return lat, nil
}

func verify(mode string, r *relayProc) error {
	c, err := dial(mode, r, true)
	if err != nil {
		return err
	}
	defer c.Close()
	const total = 16 << 20
	const seed = 42
	werr := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, 1))
		if _, err := c.Write([]byte{'V'}); err != nil {
			werr <- err
			return
		}
		buf := make([]byte, 64<<10)
		sent := 0
		for sent < total {
			sz := 1 + rng.IntN(100)
			if rng.IntN(4) == 0 {
				sz = 1 + rng.IntN(64<<10)
			}
			sz = min(sz, total-sent)
			for i := range buf[:sz] {
				buf[i] = byte(rng.Uint32())
			}
			if _, err := c.Write(buf[:sz]); err != nil {
				werr <- err
				return
			}
			sent += sz
		}
		werr <- c.CloseWrite()
	}()
	rng := rand.New(rand.NewPCG(seed, 1))
	buf := make([]byte, 100<<10)
	got := 0
	// regenerate the expected stream in the same chunking
	expect := make([]byte, 0, total)
	{
		tmp := make([]byte, 64<<10)
		for len(expect) < total {
			sz := 1 + rng.IntN(100)
			if rng.IntN(4) == 0 {
				sz = 1 + rng.IntN(64<<10)
			}
			sz = min(sz, total-len(expect))
			for i := range tmp[:sz] {
				tmp[i] = byte(rng.Uint32())
			}
			expect = append(expect, tmp[:sz]...)
		}
	}
	for {
		m, err := c.Read(buf)
		if m > 0 {
			if got+m > total {
				return fmt.Errorf("received more than sent (%d)", got+m)
			}
			for i := 0; i < m; i++ {
				if buf[i] != expect[got+i] {
					return fmt.Errorf("byte %d differs", got+i)
				}
			}
			got += m
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read after %d bytes: %w", got, err)
		}
	}
	if e := <-werr; e != nil {
		return fmt.Errorf("writer: %w", e)
	}
	if got != total {
		return fmt.Errorf("got %d of %d bytes before EOF", got, total)
	}
	return nil
}

// throughput sends n bytes C->S, half-closes and waits for S's byte count.
func throughput(c *net.TCPConn, n int64) (time.Duration, int64, error) {
	buf := make([]byte, 256<<10)
	t0 := time.Now()
	if _, err := c.Write([]byte{'T'}); err != nil {
		return 0, 0, err
	}
	left := n
	for left > 0 {
		m := min(left, int64(len(buf)))
		if _, err := c.Write(buf[:m]); err != nil {
			return 0, 0, err
		}
		left -= m
	}
	c.CloseWrite()
	var cnt [8]byte
	if _, err := io.ReadFull(c, cnt[:]); err != nil {
		return time.Since(t0), -1, fmt.Errorf("no byte count back from S: %w", err)
	}
	return time.Since(t0), int64(binary.LittleEndian.Uint64(cnt[:])), nil
}

// ---------------------------------------------------------------- CPU accounting

func selfCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var clkTck = 100.0

// systemBusy returns total non-idle CPU time of all CPUs from /proc/stat.
func systemBusy() time.Duration {
	b, _ := os.ReadFile("/proc/stat")
	line := strings.SplitN(string(b), "\n", 2)[0]
	f := strings.Fields(line)[1:]
	var busy float64
	for i, s := range f {
		v, _ := strconv.ParseFloat(s, 64)
		if i == 3 || i == 4 || i == 8 || i == 9 { // idle, iowait, guest, guest_nice (guest included in user)
			continue
		}
		busy += v
	}
	return time.Duration(busy / clkTck * 1e9)
}

// kworkerCPU sums on-CPU time (schedstat, ns) of all kworker threads.
func kworkerCPU() map[int]int64 {
	m := map[int]int64{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || !strings.HasPrefix(string(comm), "kworker") {
			continue
		}
		ss, err := os.ReadFile("/proc/" + e.Name() + "/schedstat")
		if err != nil {
			continue
		}
		v, _ := strconv.ParseInt(strings.Fields(string(ss))[0], 10, 64)
		m[pid] = v
	}
	return m
}

func kworkerDelta(a, b map[int]int64) time.Duration {
	var d int64
	for pid, v := range b {
		d += v - a[pid] // new kworkers count from 0
	}
	return time.Duration(d)
}

// ---------------------------------------------------------------- benchmark

type tpResult struct {
	mbps                              float64
	relayCPU, selfCPU, kwCPU, sysBusy time.Duration // per GiB
	lost                              int64
}

func pct(s []time.Duration, q float64) float64 {
	if len(s) == 0 {
		return -1
	}
	return float64(s[int(q*float64(len(s)-1))].Nanoseconds()) / 1e3
}

func sortDur(s []time.Duration) { sort.Slice(s, func(i, j int) bool { return s[i] < s[j] }) }

func runBench() {
	modes := strings.Split(*flModes, ",")
	conds := strings.Split(*flConds, ",")
	lat := map[string][]time.Duration{} // mode/cond -> pooled samples
	perRound := map[string][]string{}   // mode/cond -> per-round p50
	tps := map[string][]tpResult{}
	fmt.Printf("# %s, %d CPUs, GOMAXPROCS=%d, rounds=%d n=%d req=%d resp=%d bytes=%d attach=%s fin=%s\n",
		kernelRelease(), runtime.NumCPU(), runtime.GOMAXPROCS(0), *flRounds, *flN, *flReq, *flResp, *flBytes, *flAttach, *flFin)
	for round := 0; round < *flRounds; round++ {
		for k := range modes {
			mode := modes[(k+round)%len(modes)]
			var r *relayProc
			if mode != "direct" {
				var err error
				r, err = startRelay(mode)
				if err != nil {
					fmt.Printf("round %d %s: %v\n", round, mode, err)
					continue
				}
			}
			if *flVerify && mode != "direct" {
				if err := verify(mode, r); err != nil {
					fmt.Printf("round %d %-12s VERIFY FAILED: %v\n", round, mode, err)
					r.stop()
					continue
				}
				fmt.Printf("round %d %-12s verify ok (16 MiB echoed, random chunk sizes, half-close both ways)\n", round, mode)
			}
			for _, cond := range conds {
				key := mode + "/" + cond
				switch cond {
				case "idle", "spin", "pair":
					var spin interface{ Kill() error }
					var spinCmd = (*exec.Cmd)(nil)
					var stop atomic.Bool
					var bgWG sync.WaitGroup
					var bgN int
					if cond == "spin" {
						spinCmd = startSpin()
						spin = spinCmd.Process
					}
					if cond == "pair" {
						bc, err := dial(mode, r, true)
						if err != nil {
							fmt.Printf("bg dial: %v\n", err)
							continue
						}
						bgWG.Add(1)
						go func() {
							defer bgWG.Done()
							l, err := pingPong(bc, 1<<30, 0, &stop)
							bgN = len(l)
							if err != nil {
								fmt.Printf("bg pair error after %d RTs: %v\n", bgN, err)
							}
							bc.Close()
						}()
						time.Sleep(100 * time.Millisecond)
					}
					c, err := dial(mode, r, true)
					if err != nil {
						fmt.Printf("dial: %v\n", err)
						continue
					}
					t0 := time.Now()
					l, err := pingPong(c, *flN, *flWarmup, nil)
					el := time.Since(t0)
					c.Close()
					stop.Store(true)
					bgWG.Wait()
					if spin != nil {
						stopSpin(spinCmd)
					}
					if err != nil {
						fmt.Printf("round %d %-12s %-5s ERROR after %d RTs: %v\n", round, mode, cond, len(l), err)
						continue
					}
					lat[key] = append(lat[key], l...)
					sortDur(l)
					extra := ""
					if cond == "pair" {
						extra = fmt.Sprintf(" (bg pair did %d RTs)", bgN)
					}
					fmt.Printf("round %d %-12s %-5s p50 %7.1f p90 %7.1f p99 %7.1f µs  (%d RTs in %v)%s\n", round, mode, cond, pct(l, .5), pct(l, .9), pct(l, .99), len(l), el.Round(time.Millisecond), extra)
					perRound[key] = append(perRound[key], fmt.Sprintf("%.0f", pct(l, .5)))
				case "tput":
					c, err := dial(mode, r, true)
					if err != nil {
						fmt.Printf("dial: %v\n", err)
						continue
					}
					var rc0 time.Duration
					if r != nil {
						rc0 = r.cpu()
					}
					s0, k0, b0 := selfCPU(), kworkerCPU(), systemBusy()
					el, got, err := throughput(c, *flBytes)
					s1, k1, b1 := selfCPU(), kworkerCPU(), systemBusy()
					var rc1 time.Duration
					if r != nil {
						rc1 = r.cpu()
					}
					c.Close()
					if err != nil {
						fmt.Printf("round %d %-12s tput ERROR: %v (S got %d)\n", round, mode, err, got)
						continue
					}
					gib := float64(*flBytes) / (1 << 30)
					per := func(d time.Duration) time.Duration { return time.Duration(float64(d) / gib) }
					t := tpResult{mbps: float64(*flBytes) / el.Seconds() / 1e6, relayCPU: per(rc1 - rc0), selfCPU: per(s1 - s0), kwCPU: per(kworkerDelta(k0, k1)), sysBusy: per(b1 - b0), lost: *flBytes - got}
					tps[key] = append(tps[key], t)
					fmt.Printf("round %d %-12s tput  %7.0f MB/s  per GiB: relay-proc %.3fs  C+S-proc %.3fs  kworkers %.3fs  whole-system %.3fs  lost %d\n",
						round, mode, t.mbps, t.relayCPU.Seconds(), t.selfCPU.Seconds(), t.kwCPU.Seconds(), t.sysBusy.Seconds(), t.lost)
				}
			}
			if r != nil {
				r.stop()
			}
		}
	}
	fmt.Printf("\n## Summary (latency pooled over rounds; per-round p50 in brackets)\n")
	for _, cond := range conds {
		if cond == "tput" {
			continue
		}
		fmt.Printf("\n### %s  (%d B request, %d B response)\n| mode | p50 µs | p90 µs | p99 µs | per-round p50 |\n|---|---|---|---|---|\n", cond, *flReq, *flResp)
		for _, mode := range modes {
			l := lat[mode+"/"+cond]
			sortDur(l)
			fmt.Printf("| %s | %.1f | %.1f | %.1f | %s |\n", mode, pct(l, .5), pct(l, .9), pct(l, .99), strings.Join(perRound[mode+"/"+cond], ", "))
		}
	}
	if strings.Contains(*flConds, "tput") {
		fmt.Printf("\n### throughput (%d bytes C->S; median MB/s; CPU-s per GiB, mean over rounds)\n| mode | MB/s (per round) | relay process | C+S process | kworkers | whole system | bytes lost |\n|---|---|---|---|---|---|---|\n", *flBytes)
		for _, mode := range modes {
			ts := tps[mode+"/tput"]
			if len(ts) == 0 {
				fmt.Printf("| %s | - |\n", mode)
				continue
			}
			var mb []float64
			var rc, sc, kc, sb time.Duration
			var lost int64
			var rs []string
			for _, t := range ts {
				mb = append(mb, t.mbps)
				rs = append(rs, fmt.Sprintf("%.0f", t.mbps))
				rc += t.relayCPU
				sc += t.selfCPU
				kc += t.kwCPU
				sb += t.sysBusy
				lost += t.lost
			}
			sort.Float64s(mb)
			n := time.Duration(len(ts))
			fmt.Printf("| %s | %.0f (%s) | %.3f | %.3f | %.3f | %.3f | %d |\n", mode, mb[len(mb)/2], strings.Join(rs, ", "), (rc / n).Seconds(), (sc / n).Seconds(), (kc / n).Seconds(), (sb / n).Seconds(), lost)
		}
	}
}

func kernelRelease() string {
	var u unix.Utsname
	unix.Uname(&u)
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}
