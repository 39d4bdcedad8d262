// Command layer measures what the interception layer costs a program, side
// by side with the same program run without it, in one run:
//
//	go run ./bench/layer            (as any user; Linux x86-64)
//
// It prints a table (direct, under the layer, added cost, ratio). The
// program measured is this binary itself in its "workload" mode, started
// directly or through the layer's launcher with a handler that redirects
// one address and serves one file, as a session would.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/layer"
	"github.com/doppel-dev/doppel/layer/launcher"
	"github.com/doppel-dev/doppel/layer/seccomp"
)

// redirected is the "remote" address the handler sends to the local sink;
// nothing is ever sent to it.
var redirected = netip.MustParseAddrPort("10.77.0.1:80")

const servedPath = "/doppel-bench/served"

func main() {
	launcher.Main()
	if len(os.Args) > 1 && os.Args[1] == "workload" {
		os.Exit(workload(os.Args[2:]))
	}
	n := flag.Int("n", 200000, "iterations of the per-call measurements")
	conns := flag.Int("conns", 3000, "connections for the connect measurement")
	mib := flag.Int("mib", 512, "MiB for the throughput measurement")
	runs := flag.Int("runs", 10, "runs of `python3 -c pass`")
	goBuild := flag.Bool("go-build", true, "measure a cold `go build` (about a minute each way)")
	flag.Parse()
	if err := run(*n, *conns, *mib, *runs, *goBuild); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type row struct {
	name           string
	direct, layer  float64
	unit           string
	higherIsBetter bool
}

func run(n, conns, mib, runs int, goBuild bool) error {
	sink, err := startSink(mib)
	if err != nil {
		return err
	}
	defer sink.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	local, err := os.CreateTemp("", "doppel-bench-file")
	if err != nil {
		return err
	}
	local.WriteString("hello from the pod\n")
	local.Close()
	defer os.Remove(local.Name())

	var rows []row
	measure := func(name, unit string, higher bool, op, arg string, iters int) error {
		d, err := workloadResult(self, false, sink.addr, op, arg, iters)
		if err != nil {
			return fmt.Errorf("%s direct: %w", name, err)
		}
		l, err := workloadResult(self, true, sink.addr, op, arg, iters)
		if err != nil {
			return fmt.Errorf("%s under the layer: %w", name, err)
		}
		rows = append(rows, row{name, d, l, unit, higher})
		return nil
	}
	sinkAddr := sink.addr.String()
	if err := measure("untrapped syscall (getppid)", "ns/call", false, "getppid", "", n); err != nil {
		return err
	}
	if err := measure("openat+close, trapped, passed through", "µs/call", false, "open", local.Name(), n/10); err != nil {
		return err
	}
	if err := measureServed(&rows, self, sink.addr, local.Name(), n/10); err != nil {
		return err
	}
	if err := measureConnect(&rows, self, sink.addr, sinkAddr, conns); err != nil {
		return err
	}
	if err := measureThroughput(&rows, self, sink.addr, sinkAddr, mib); err != nil {
		return err
	}
	if err := measureCommand(&rows, "python3 -c pass", runs, []string{"python3", "-c", "pass"}, nil); err != nil {
		return err
	}
	if goBuild {
		if err := measureGoBuild(&rows); err != nil {
			return err
		}
	}
	print(rows)
	return nil
}

func measureServed(rows *[]row, self string, sink netip.AddrPort, localFile string, n int) error {
	d, err := workloadResult(self, false, sink, "open", localFile, n)
	if err != nil {
		return err
	}
	l, err := workloadResult(self, true, sink, "open", servedPath, n)
	if err != nil {
		return err
	}
	*rows = append(*rows, row{"openat+close, served from the session (memfd)", d, l, "µs/call", false})
	return nil
}

func measureConnect(rows *[]row, self string, sink netip.AddrPort, sinkAddr string, conns int) error {
	d, err := workloadResult(self, false, sink, "connect", sinkAddr, conns)
	if err != nil {
		return err
	}
	l, err := workloadWith(self, quickBenchHandler{&benchHandler{sink: sink}, false}, "connect", redirected.String(), conns)
	if err != nil {
		return err
	}
	q, err := workloadWith(self, quickBenchHandler{&benchHandler{sink: sink}, true}, "connect", redirected.String(), conns)
	if err != nil {
		return err
	}
	*rows = append(*rows,
		row{"TCP connect+close, redirected by Connect (a first dial's path, no remote dial)", d, l, "µs/conn", false},
		row{"TCP connect+close, redirected on the receive loop (early connect)", d, q, "µs/conn", false})
	return nil
}

func measureThroughput(rows *[]row, self string, sink netip.AddrPort, sinkAddr string, mib int) error {
	d, err := workloadResult(self, false, sink, "read", sinkAddr, mib)
	if err != nil {
		return err
	}
	l, err := workloadResult(self, true, sink, "read", redirected.String(), mib)
	if err != nil {
		return err
	}
	*rows = append(*rows, row{fmt.Sprintf("throughput, %d MiB on a redirected socket", mib), d, l, "MB/s", true})
	return nil
}

func measureCommand(rows *[]row, name string, runs int, argv, env []string) error {
	var direct, layered time.Duration
	for i := 0; i < runs; i++ {
		for _, under := range []bool{false, true} {
			start := time.Now()
			if err := runUnder(under, netip.AddrPort{}, argv, env, nil); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if under {
				layered += time.Since(start)
			} else {
				direct += time.Since(start)
			}
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(runs) }
	*rows = append(*rows, row{name, ms(direct), ms(layered), "ms/run", false})
	return nil
}

func measureGoBuild(rows *[]row) error {
	dir, err := os.MkdirTemp("", "doppel-bench-gobuild")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := "package main\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n)\n\nfunc main() { fmt.Println(http.StatusOK) }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module bench\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	var times [2]float64
	for i, under := range []bool{false, true} {
		cache := filepath.Join(dir, fmt.Sprintf("cache%d", i))
		env := []string{"GOCACHE=" + cache, "GOFLAGS=-buildvcs=false"}
		start := time.Now()
		if err := runUnder(under, netip.AddrPort{}, []string{"go", "build", "-C", dir, "-o", filepath.Join(dir, "out"), "."}, env, nil); err != nil {
			return fmt.Errorf("go build: %w", err)
		}
		times[i] = time.Since(start).Seconds()
	}
	*rows = append(*rows, row{"cold `go build` (net/http program, empty GOCACHE)", times[0], times[1], "s", false})
	return nil
}

func print(rows []row) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "measurement\tdirect\tunder the layer\tadded\tlayer/direct\tunit\t")
	for _, r := range rows {
		added := r.layer - r.direct
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.2fx\t%s\t\n", r.name, num(r.direct), num(r.layer), num(added), r.layer/r.direct, r.unit)
	}
	w.Flush()
}

func num(f float64) string {
	switch {
	case f >= 100 || f <= -100:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case f >= 10 || f <= -10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

// workloadResult runs this binary's workload mode and returns the number it prints.
func workloadResult(self string, under bool, sink netip.AddrPort, op, arg string, n int) (float64, error) {
	var h layer.Handler
	if under {
		h = &benchHandler{sink: sink}
	}
	return workloadWith(self, h, op, arg, n)
}

// workloadWith runs the workload directly (h nil) or under the layer with h.
func workloadWith(self string, h layer.Handler, op, arg string, n int) (float64, error) {
	var out strings.Builder
	argv := []string{self, "workload", op, arg, strconv.Itoa(n)}
	if err := runWith(h, argv, nil, &out); err != nil {
		return 0, err
	}
	return strconv.ParseFloat(strings.TrimSpace(out.String()), 64)
}

// runUnder runs argv directly or under the layer with the bench handler.
func runUnder(under bool, sink netip.AddrPort, argv, env []string, stdout io.Writer) error {
	var h layer.Handler
	if under {
		h = &benchHandler{sink: sink}
	}
	return runWith(h, argv, env, stdout)
}

// runWith runs argv directly (h nil) or under the layer with h.
func runWith(h layer.Handler, argv, env []string, stdout io.Writer) error {
	env = append(os.Environ(), env...)
	if h == nil {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env, cmd.Stderr = env, os.Stderr
		if stdout != nil {
			cmd.Stdout = stdout
		}
		return cmd.Run()
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	sup := layer.NewSupervisor(h, layer.Options{Filter: seccomp.Options{Files: true, UDP: true}})
	defer sup.Close()
	tree, err := launcher.Start(context.Background(), launcher.Spec{Filter: sup.Filter()}, launcher.Command{
		Path: argv[0], Args: argv, Env: env, Stdout: w, Stderr: os.Stderr,
	}, sup.Serve)
	w.Close()
	if err != nil {
		r.Close()
		return err
	}
	var buf strings.Builder
	io.Copy(&buf, r)
	r.Close()
	if code := tree.Wait(); code != 0 {
		return fmt.Errorf("%s exited with %d", argv[0], code)
	}
	if stdout != nil {
		io.WriteString(stdout, buf.String())
	}
	return nil
}

// benchHandler behaves as a session would for one redirected address and
// one served file, and lets everything else through.
type benchHandler struct{ sink netip.AddrPort }

func (h *benchHandler) Skip(layer.Process) bool { return false }

func (h *benchHandler) Connect(_ context.Context, r layer.ConnectRequest) layer.ConnectVerdict {
	if r.Dst == redirected {
		return layer.ConnectVerdict{Action: layer.Redirect, Redirect: h.sink}
	}
	return layer.ConnectVerdict{Action: layer.Passthrough}
}

// quickBenchHandler is asked first on the layer's receive loop, as a
// session is: with decide, it redirects there (a session's early connects,
// DNS responder and local routes); without, the connect goes on to Connect
// on a goroutine (a session's first connection to a destination).
type quickBenchHandler struct {
	*benchHandler
	decide bool
}

func (h quickBenchHandler) QuickConnect(ctx context.Context, r layer.ConnectRequest) (layer.ConnectVerdict, bool) {
	if !h.decide {
		return layer.ConnectVerdict{}, false
	}
	return h.Connect(ctx, r), true
}

func (h *benchHandler) Listening(layer.Process, layer.Proto, netip.AddrPort, netip.AddrPort) {}

func (h *benchHandler) Open(_ context.Context, _ layer.Process, path string, _ int) layer.OpenVerdict {
	if path != servedPath {
		return layer.OpenVerdict{Action: layer.FilePassthrough}
	}
	fd, err := unix.MemfdCreate("served", unix.MFD_CLOEXEC)
	if err != nil {
		return layer.OpenVerdict{Action: layer.FileErrno, Errno: syscall.EIO}
	}
	f := os.NewFile(uintptr(fd), "served")
	f.WriteString("hello from the pod\n")
	f.Seek(0, io.SeekStart)
	return layer.OpenVerdict{Action: layer.FileServe, File: f}
}

func (h *benchHandler) Stat(context.Context, layer.Process, string, bool) layer.StatVerdict {
	return layer.StatVerdict{Action: layer.FilePassthrough}
}

// sink accepts connections: "connect" ones are closed at once, "read" ones
// get mib MiB of zeros.
type sink struct {
	ln   net.Listener
	addr netip.AddrPort
}

func startSink(mib int) (*sink, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{ln: ln, addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	go func() {
		buf := make([]byte, 1<<20)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var cmd [1]byte
				if _, err := c.Read(cmd[:]); err != nil || cmd[0] != 'r' {
					return
				}
				for i := 0; i < mib; i++ {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s, nil
}

func (s *sink) Close() error { return s.ln.Close() }

// QuickFile lets every path but the served one through on the layer's
// receive loop, as the session does for local paths.
func (h *benchHandler) QuickFile(_ layer.Process, path string, _ bool) (layer.FileAction, syscall.Errno, bool) {
	return layer.FilePassthrough, 0, path != servedPath
}
