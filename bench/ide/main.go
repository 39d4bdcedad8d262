// Command ide measures how fast `doppel ide` gets a debuggee running with a
// warm agent, side by side with `doppel exec -- true` in the same run:
//
//	make cluster image doppel shim && go run ./bench/ide
//
// Warm: another session keeps the target's agent running. "resolveLaunch
// to debuggee running" is the resolveLaunch round trip of a node launch
// (a new session) plus the run of the resolved program under preload mode
// (/bin/true with the returned env: the shim connects, hands its filter
// over, the program runs and exits) — what an IDE waits for between
// pressing Debug and its program starting. The Go row is resolveLaunch of
// a go launch: a new session plus `dlv dap` started under the launcher and
// listening (the Go extension connects then).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.lsp.dev/jsonrpc2"

	"github.com/doppel-dev/doppel/bench/internal/cluster"
	"github.com/doppel-dev/doppel/helper/ide"
	"github.com/doppel-dev/doppel/internal/stats"
)

var (
	doppel    = flag.String("doppel", "bin/doppel", "doppel binary (make doppel; bin/libdoppel.so beside it: make shim)")
	dlv       = flag.String("dlv", filepath.Join(os.Getenv("HOME"), ".cache/doppel/tools/dlv"), "Delve, for the go row (skipped when missing)")
	runs      = flag.Int("runs", 5, "runs of each measurement")
	namespace = "doppel-bench-ide-" + strconv.Itoa(rand.IntN(1e6))
)

// agentImage is the agent image the sessions use.
var agentImage string

func main() {
	cluster.Main(namespace, func(image string) error {
		agentImage = image
		return run()
	})
}

type stdio struct {
	io.ReadCloser
	w io.WriteCloser
}

func (s stdio) Write(b []byte) (int, error) { return s.w.Write(b) }
func (s stdio) Close() error {
	s.w.Close()
	return s.ReadCloser.Close()
}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

func run() error {
	if _, err := cluster.K("run", "-n", namespace, "target", "--image=doppel.local/toolbox:dev", "--image-pull-policy=Never",
		"--restart=Never", "--", "serve", "-port", "8080"); err != nil {
		return err
	}
	if _, err := cluster.K("wait", "-n", namespace, "--for=condition=Ready", "pod/target", "--timeout=60s"); err != nil {
		return err
	}
	wd, err := os.MkdirTemp("", "doppel-bench-ide")
	if err != nil {
		return err
	}
	defer os.RemoveAll(wd)
	os.MkdirAll(filepath.Join(wd, ".doppel"), 0o755)
	cfg := fmt.Sprintf("target: {path: pod/target, namespace: %s}\nagent: {image: %q, image_pull_policy: Never, communication_timeout: 2, ttl: 1}\n"+
		"feature: {network: {incoming: \"off\"}}\n", namespace, agentImage)
	if err := os.WriteFile(filepath.Join(wd, ".doppel", "config.yaml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	bin, err := filepath.Abs(*doppel)
	if err != nil {
		return err
	}
	// The agent is kept warm by a session of its own.
	holder := exec.Command(bin, "exec", "--", "sleep", "600")
	holder.Dir = wd
	var holderErr bytes.Buffer
	holder.Stderr = &holderErr
	if err := holder.Start(); err != nil {
		return err
	}
	defer func() {
		holder.Process.Kill() // the holder this run started
		holder.Wait()
	}()
	for deadline := time.Now().Add(2 * time.Minute); !strings.Contains(holderErr.String(), "connected to"); {
		if time.Now().After(deadline) {
			return fmt.Errorf("the warm-up session did not connect:\n%s", holderErr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	var execTimes []float64
	for i := 0; i < *runs; i++ {
		cmd := exec.Command(bin, "exec", "--", "true")
		cmd.Dir = wd
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("doppel exec -- true: %v\n%s", err, out)
		}
		execTimes = append(execTimes, time.Since(start).Seconds())
	}

	ideCmd := exec.Command(bin, "ide")
	ideCmd.Env = append(os.Environ(), "DOPPEL_DLV="+*dlv)
	in, _ := ideCmd.StdinPipe()
	out, _ := ideCmd.StdoutPipe()
	var ideLog bytes.Buffer
	ideCmd.Stderr = &ideLog
	if err := ideCmd.Start(); err != nil {
		return err
	}
	defer func() {
		ideCmd.Process.Kill() // the doppel ide this run started
		ideCmd.Wait()
	}()
	conn := jsonrpc2.NewConn(jsonrpc2.NewStream(stdio{out, in}), jsonrpc2.WithCodec(jsonCodec{}))
	conn.Go(context.Background(), func(context.Context, *jsonrpc2.Request) (any, error) { return nil, nil })
	call := func(method string, params, result any) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, err := conn.Call(ctx, method, params, result)
		if err != nil {
			return fmt.Errorf("%s: %v\n%s", method, err, ideLog.String())
		}
		return nil
	}
	if err := call(ide.MethodInitialize, ide.InitializeParams{ClientName: "bench"}, nil); err != nil {
		return err
	}
	trueBin, err := exec.LookPath("true")
	if err != nil {
		return err
	}
	var resolveOnly, toRunning []float64
	for i := 0; i < *runs; i++ {
		var res ide.ResolveLaunchResult
		start := time.Now()
		if err := call(ide.MethodResolveLaunch, ide.ResolveLaunchParams{WorkspaceFolder: wd,
			Launch: map[string]any{"type": "node", "request": "launch", "program": "x.js"}}, &res); err != nil {
			return err
		}
		resolveOnly = append(resolveOnly, time.Since(start).Seconds())
		cmd := exec.Command(trueBin)
		cmd.Env = os.Environ()
		env, _ := res.Launch["env"].(map[string]any)
		for k, v := range env {
			cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%v", k, v))
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("the preloaded debuggee: %v\n%s", err, out)
		}
		toRunning = append(toRunning, time.Since(start).Seconds())
		if err := call(ide.MethodEndSession, ide.SessionParams{SessionID: res.SessionID}, nil); err != nil {
			return err
		}
	}
	var goTimes []float64
	if _, err := os.Stat(*dlv); err == nil {
		for i := 0; i < *runs; i++ {
			var res ide.ResolveLaunchResult
			start := time.Now()
			if err := call(ide.MethodResolveLaunch, ide.ResolveLaunchParams{WorkspaceFolder: wd,
				Launch: map[string]any{"type": "go", "request": "launch", "program": wd}}, &res); err != nil {
				return err
			}
			goTimes = append(goTimes, time.Since(start).Seconds())
			if err := call(ide.MethodEndSession, ide.SessionParams{SessionID: res.SessionID}, nil); err != nil {
				return err
			}
		}
	}
	call(ide.MethodShutdown, nil, nil)

	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "measurement (warm agent, median of %d)\tseconds\tvs exec\taim\n", *runs)
	ex := stats.Median(execTimes)
	fmt.Fprintf(w, "doppel exec -- true\t%.3f\t1.00x\t\n", ex)
	check := func(v float64) string {
		if v <= 0.5 {
			return "≤ 0.5 s ✓"
		}
		return "≤ 0.5 s ✗"
	}
	fmt.Fprintf(w, "resolveLaunch (node), new session\t%.3f\t%.2fx\t\n", stats.Median(resolveOnly), stats.Median(resolveOnly)/ex)
	fmt.Fprintf(w, "resolveLaunch to debuggee running (node, preload)\t%.3f\t%.2fx\t%s\n", stats.Median(toRunning), stats.Median(toRunning)/ex, check(stats.Median(toRunning)))
	if goTimes != nil {
		fmt.Fprintf(w, "resolveLaunch (go): session + dlv dap listening\t%.3f\t%.2fx\t%s\n", stats.Median(goTimes), stats.Median(goTimes)/ex, check(stats.Median(goTimes)))
	}
	return w.Flush()
}
