// Command incoming measures a target's incoming traffic with doppel sessions
// on it against the same traffic without doppel, on the local cluster, in
// one run:
//
//	make cluster images image doppel && go run ./bench/incoming
//
// A client pod sends HTTP requests to a target pod (toolbox serve) by pod IP:
//
//   - steal: the latency of requests answered by a local server under
//     `doppel exec` stealing the port, against the pod answering them;
//   - filtered steal, unmatched requests: what colleagues pay while someone
//     steals with a header filter their requests don't match — latency and
//     throughput at the same concurrency, against no doppel at all;
//   - mirror: requests at a fixed rate for a fixed time; how many the local
//     process got a copy of, and the remote's p99 against no doppel.
//
// Every load is bounded in count and time; all traffic stays in the local
// cluster and on loopback.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/doppel-dev/doppel/bench/internal/cluster"
	"github.com/doppel-dev/doppel/internal/stats"
)

var (
	doppel      = flag.String("doppel", "bin/doppel", "doppel binary (make doppel)")
	requests    = flag.Int("requests", 500, "requests of the steal latency measurement")
	conc        = flag.Int("c", 8, "connections of the unmatched-requests measurement")
	seconds     = flag.Duration("duration", 10*time.Second, "length of the unmatched-requests measurement")
	mirrorRate  = flag.Int("mirror-rate", 1000, "requests per second of the mirror measurement")
	mirrorFor   = flag.Duration("mirror-duration", 60*time.Second, "length of the mirror measurement")
	mirrorConns = flag.Int("mirror-c", 64, "connections of the mirror measurement")
	mirrorPairs = flag.Int("mirror-pairs", 4, "paired rounds (with and without doppel, order alternating) of the mirror latency measurement")
	pairFor     = flag.Duration("mirror-pair-duration", 15*time.Second, "length of each side of a paired round")
	only        = flag.String("only", "steal,unmatched,mirror", "the measurements to make")
	localNice   = flag.Int("local-nice", 0, "niceness of doppel and the local server (19 stands in for a developer's machine apart from the node)")
	localIdle   = flag.Bool("local-idle", false, "run doppel and the local server under SCHED_IDLE: they get a CPU only when the node's own processes leave one (a stronger stand-in for a developer's machine apart from the node)")
	namespace   = "doppel-bench-in-" + strconv.Itoa(rand.IntN(1e6))
)

// envLocal makes this binary the local server (run under doppel exec): it
// answers "local", counts the requests that carry benchHeader, and writes
// the count to the file the variable names when SIGINT or SIGTERM ends it.
const envLocal = "DOPPEL_BENCH_INCOMING_LOCAL"

const benchHeader = "X-Doppel-Bench"

// agentImage is the agent image the sessions use.
var agentImage string

func main() {
	if file := os.Getenv(envLocal); file != "" {
		os.Exit(localServer(file))
	}
	cluster.Main(namespace, func(image string) error {
		agentImage = image
		return run()
	})
}

func localServer(countFile string) int {
	var n atomic.Int64
	srv := &http.Server{Addr: ":8080", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(benchHeader) != "" {
			n.Add(1)
		}
		io.WriteString(w, "local\n")
	})}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		os.WriteFile(countFile, []byte(strconv.FormatInt(n.Load(), 10)), 0o644)
		os.Exit(0)
	}()
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "local server:", err)
		return 1
	}
	return 0
}

// loadResult is `toolbox load`'s output.
type loadResult struct {
	Sent    int64            `json:"sent"`
	OK      int64            `json:"ok"`
	Errors  int64            `json:"errors"`
	Seconds float64          `json:"seconds"`
	RPS     float64          `json:"rps"`
	P50ms   float64          `json:"p50_ms"`
	P99ms   float64          `json:"p99_ms"`
	Bodies  map[string]int64 `json:"bodies"`
	Error   string           `json:"error"`
}

type row struct {
	name            string
	doppel, without float64
	unit            string
	aim             string
}

func run() error {
	manifest := `apiVersion: v1
kind: Pod
metadata: {name: target, labels: {app: target}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: doppel.local/toolbox:dev, imagePullPolicy: Never, args: [serve, -port, "8080"],
     readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 5}}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: doppel.local/toolbox:dev, imagePullPolicy: Never, args: [sleep]}
`
	if _, err := cluster.KIn(manifest, "apply", "-n", namespace, "-f", "-"); err != nil {
		return err
	}
	if _, err := cluster.K("wait", "-n", namespace, "--for=condition=Ready", "pod/target", "pod/client", "--timeout=60s"); err != nil {
		return err
	}
	ip, err := cluster.K("get", "pod", "-n", namespace, "target", "-o", "jsonpath={.status.podIP}")
	if err != nil {
		return err
	}
	url := "http://" + strings.TrimSpace(ip) + ":8080/"
	remote := "hello from target"

	var rows []row
	var notes []string

	want := func(m string) bool { return strings.Contains(","+*only+",", ","+m+",") }
	if want("steal") {
		if rows, err = stealRows(url, remote, rows); err != nil {
			return err
		}
	}
	if want("unmatched") {
		if rows, err = unmatchedRows(url, remote, rows); err != nil {
			return err
		}
	}
	if want("mirror") {
		if rows, notes, err = mirrorRows(url, remote, rows, notes); err != nil {
			return err
		}
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measurement\tdoppel\twithout doppel\tdoppel/without\tunit\taim\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%.3g\t%.3g\t%.2fx\t%s\t%s\t\n", r.name, r.doppel, r.without, r.doppel/r.without, r.unit, r.aim)
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Println(n)
	}
	return nil
}

// stealRows: who answers changes; the added latency is the path through
// the agent, the port-forward and the helper.
func stealRows(url, remote string, rows []row) ([]row, error) {
	without, err := loadFrom(url, remote, "-n", strconv.Itoa(*requests), "-c", "1")
	if err != nil {
		return rows, err
	}
	var stolen loadResult
	if err := withSession("steal", "steal", func() error {
		stolen, err = loadFrom(url, "local", "-n", strconv.Itoa(*requests), "-c", "1")
		return err
	}, nil); err != nil {
		return rows, err
	}
	return append(rows,
		row{"steal: request latency p50 (keep-alive, 1 at a time)", stolen.P50ms, without.P50ms, "ms", "—"},
		row{"steal: request latency p99", stolen.P99ms, without.P99ms, "ms", "—"}), nil
}

// unmatchedRows: under a filtered steal, the requests of everyone else.
func unmatchedRows(url, remote string, rows []row) ([]row, error) {
	filtered := `{mode: steal, http_filter: {header_filter: "^x-bench-user: nobody$"}}`
	dur := seconds.String()
	load := func() (loadResult, error) {
		return loadFrom(url, remote, "-duration", dur, "-c", strconv.Itoa(*conc))
	}
	without, costWithout, err := withCPU(load)
	if err != nil {
		return rows, err
	}
	var unmatched loadResult
	var cost cpuCost
	if err := withSession(filtered, "steal (filtered)", func() (err error) {
		unmatched, cost, err = withCPU(load)
		return err
	}, nil); err != nil {
		return rows, err
	}
	fmt.Printf("filtered steal, unmatched: %s (no doppel: %.0f µs)\n", cost, costWithout.node)
	return append(rows,
		row{fmt.Sprintf("filtered steal, unmatched: latency p50 (%d conns)", *conc), unmatched.P50ms, without.P50ms, "ms",
			fmt.Sprintf("≤ +0.2 ms %s", mark(unmatched.P50ms-without.P50ms <= 0.2))},
		row{"filtered steal, unmatched: latency p99", unmatched.P99ms, without.P99ms, "ms", "—"},
		row{"filtered steal, unmatched: throughput", unmatched.RPS, without.RPS, "req/s",
			fmt.Sprintf("≥ 90 %% %s", mark(unmatched.RPS >= 0.9*without.RPS))},
		row{"filtered steal, unmatched: node CPU per request", cost.node, costWithout.node, "µs", "— (CPU-bound here)"}), nil
}

// mirrorRows: every request copied to the local process; the remote
// answers as before.
func mirrorRows(url, remote string, rows []row, notes []string) ([]row, []string, error) {
	rate, mdur := strconv.Itoa(*mirrorRate), mirrorFor.String()
	mirrorArgs := []string{"-rate", rate, "-duration", mdur, "-c", strconv.Itoa(*mirrorConns), "-H", benchHeader + ": 1"}
	load := func() (loadResult, error) { return loadFrom(url, remote, mirrorArgs...) }
	without, costWithout, err := withCPU(load)
	if err != nil {
		return rows, notes, err
	}
	var mirrored loadResult
	var cost cpuCost
	var copies int64
	var drops []string
	if err := withSession("mirror", "mirror", func() (err error) {
		mirrored, cost, err = withCPU(load)
		return err
	}, func(count int64, stderr string) {
		copies = count
		for _, line := range strings.Split(stderr, "\n") {
			if strings.Contains(line, "drop") || strings.Contains(line, "overflow") {
				drops = append(drops, line)
			}
		}
	}); err != nil {
		return rows, notes, err
	}
	complete := 100 * float64(copies) / float64(mirrored.OK)
	rows = append(rows,
		row{fmt.Sprintf("mirror: requests copied to the local process (%s at %s/s)", mdur, rate), complete, 100, "%",
			fmt.Sprintf("100 %% %s", mark(copies >= mirrored.OK))},
		row{"mirror: remote latency p99", mirrored.P99ms, without.P99ms, "ms",
			fmt.Sprintf("≤ +10 %% %s", mark(mirrored.P99ms <= 1.1*without.P99ms))},
		row{"mirror: remote latency p50", mirrored.P50ms, without.P50ms, "ms", "—"},
		row{"mirror: requests answered per second", mirrored.RPS, without.RPS, "req/s", "—"})
	notes = append(notes, fmt.Sprintf("mirror: %d requests answered by the pod, %d copies reached the local process", mirrored.OK, copies))
	notes = append(notes, fmt.Sprintf("mirror: %s, the local process and doppel's helper included (no doppel: %.0f µs)", cost, costWithout.node))
	notes = append(notes, drops...)

	// The two 60 s phases above are a minute apart, and the VM's other
	// load moves a p99 by more than the aim between them: paired rounds,
	// each side right after the other, in alternating order, compare
	// like with like.
	pairArgs := []string{"-rate", rate, "-duration", pairFor.String(), "-c", strconv.Itoa(*mirrorConns), "-H", benchHeader + ": 1"}
	var withP99, withoutP99, ratio []float64
	var pairs []string
	for i := 0; i < *mirrorPairs; i++ {
		var w, wo loadResult
		runWithout := func() (err error) { wo, err = loadFrom(url, remote, pairArgs...); return err }
		runWith := func() error {
			return withSession("mirror", "mirror", func() (err error) { w, err = loadFrom(url, remote, pairArgs...); return err }, nil)
		}
		first, second := runWithout, runWith
		if i%2 == 1 {
			first, second = runWith, runWithout
		}
		if err := first(); err != nil {
			return rows, notes, err
		}
		if err := second(); err != nil {
			return rows, notes, err
		}
		withP99, withoutP99 = append(withP99, w.P99ms), append(withoutP99, wo.P99ms)
		ratio = append(ratio, w.P99ms/wo.P99ms)
		pairs = append(pairs, fmt.Sprintf("%.2f/%.2f", w.P99ms, wo.P99ms))
	}
	if *mirrorPairs > 0 {
		r := stats.Median(ratio)
		rows = append(rows, row{fmt.Sprintf("mirror: remote latency p99, %d paired rounds of %s (median)", *mirrorPairs, pairFor), stats.Median(withP99), stats.Median(withoutP99), "ms",
			fmt.Sprintf("≤ +10 %% %s (median ratio %.2fx)", mark(r <= 1.1), r)})
		notes = append(notes, "mirror: paired rounds' p99, doppel/without (ms): "+strings.Join(pairs, ", "))
	}
	return rows, notes, nil
}

func mark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

// loadFrom runs `toolbox load` in the client pod and checks who answered.
func loadFrom(url, answeredBy string, args ...string) (loadResult, error) {
	var res loadResult
	out, err := cluster.K(append(append([]string{"exec", "-n", namespace, "client", "-c", "main", "--", "/toolbox", "load"}, args...), url)...)
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil {
		return res, fmt.Errorf("toolbox load: %v %v: %s", err, jerr, out)
	}
	if res.Error != "" || res.OK == 0 {
		return res, fmt.Errorf("toolbox load %v: %s (%+v)", args, res.Error, res)
	}
	if res.Bodies[answeredBy] != res.OK {
		return res, fmt.Errorf("toolbox load %v: answers %v, want all from %q", args, res.Bodies, answeredBy)
	}
	return res, nil
}

// withSession runs the local server under `doppel exec` with incoming mode,
// waits for port 8080's subscription, calls during, and ends the session;
// after gets the local server's count of benchHeader requests and doppel's
// stderr.
func withSession(incoming, notice string, during func() error, after func(int64, string)) error {
	wd, err := os.MkdirTemp("", "doppel-bench-incoming")
	if err != nil {
		return err
	}
	defer os.RemoveAll(wd)
	os.MkdirAll(filepath.Join(wd, ".doppel"), 0o755)
	cfg := fmt.Sprintf("target: {path: pod/target, namespace: %s}\nagent: {image: %q, image_pull_policy: Never, communication_timeout: 2, ttl: 1}\nfeature:\n  network:\n    incoming: %s\n",
		namespace, agentImage, incoming)
	if err := os.WriteFile(filepath.Join(wd, ".doppel", "config.yaml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	doppelBin, err := filepath.Abs(*doppel)
	if err != nil {
		return err
	}
	countFile := filepath.Join(wd, "count")
	cmd := exec.Command(doppelBin, "exec", "--", self)
	if *localNice != 0 {
		// nice execs doppel: the PID signalled below stays doppel's.
		cmd = exec.Command("nice", "-n", strconv.Itoa(*localNice), doppelBin, "exec", "--", self)
	}
	if *localIdle {
		// chrt execs doppel, as nice does; children inherit the policy.
		cmd = exec.Command("chrt", append([]string{"--idle", "0", cmd.Path}, cmd.Args[1:]...)...)
	}
	cmd.Dir = wd
	cmd.Env = append(os.Environ(), envLocal+"="+countFile)
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	var stderr bytes.Buffer
	subscribed := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderrPipe)
		once := false
		for sc.Scan() {
			stderr.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "port 8080 of the target: "+notice) {
				once = true
				close(subscribed)
			}
		}
	}()
	stop := func() {
		cmd.Process.Signal(syscall.SIGINT) // the doppel this program started
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		<-scanned
	}
	select {
	case <-subscribed:
	case <-scanned:
		cmd.Wait()
		return fmt.Errorf("doppel exec (%s) ended before subscribing:\n%s", incoming, stderr.String())
	case <-time.After(2 * time.Minute):
		stop()
		return fmt.Errorf("doppel exec (%s) did not subscribe within 2m:\n%s", incoming, stderr.String())
	}
	err = during()
	stop()
	if err != nil {
		return fmt.Errorf("%w\ndoppel's stderr:\n%s", err, stderr.String())
	}
	if after != nil {
		b, rerr := os.ReadFile(countFile)
		if rerr != nil {
			return fmt.Errorf("the local server's count: %v\ndoppel's stderr:\n%s", rerr, stderr.String())
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		after(n, stderr.String())
	}
	return nil
}
