// Command kube measures doppel against a real cluster, side by side with
// the baseline a user has without it, in one run:
//
//	make cluster image images && go run ./bench/kube
//
// Startup: `doppel exec -- true` with a new agent (cold) and with a running
// one (warm) against a bare pod start (create to Ready). Outgoing traffic to
// a cluster Service: throughput and new-connection latency through doppel
// against `kubectl port-forward` to the same Service (its default tunnel),
// and a kept connection's latency: the round trip every new connection
// pays on top of its own setup.
// And the agent's idle memory and image size.
//
// It uses the local cluster's KUBECONFIG and the toolbox and agent images
// (`make images image`); every load is bounded.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/doppel-dev/doppel/bench/internal/cluster"
	"github.com/doppel-dev/doppel/bench/internal/procfs"
	"github.com/doppel-dev/doppel/internal/stats"
)

var (
	doppel    = flag.String("doppel", "bin/doppel", "doppel binary (make doppel)")
	runs      = flag.Int("runs", 3, "runs of each startup measurement")
	mib       = flag.Int("mib", 1024, "MiB per throughput run (bulk connections start after 4 MiB: a short run measures the start)")
	requests  = flag.Int("requests", 1000, "requests of each latency measurement (p99 of 200 is the second-slowest: too noisy to compare)")
	rounds    = flag.Int("rounds", 5, "rounds each latency measurement is split into, doppel and kubectl port-forward alternating (the VM's speed drifts within minutes)")
	other     = flag.String("other", "", "a second doppel binary whose throughput is measured in the same rounds (A/B between builds)")
	namespace = "doppel-bench-" + strconv.Itoa(rand.IntN(1e6))
)

// agentImage is the agent image the sessions use.
var agentImage string

func main() {
	cluster.Main(namespace, func(image string) error {
		agentImage = image
		return run()
	})
}

type row struct {
	name            string
	doppel, without float64
	unit            string
	baseline        string
}

func run() error {
	manifest := `apiVersion: v1
kind: Pod
metadata: {name: target, labels: {app: bulk}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: doppel.local/toolbox:dev, imagePullPolicy: Never, args: [serve, -port, "8080"],
     readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {name: bulk}
spec:
  selector: {app: bulk}
  ports: [{port: 80, targetPort: 8080}]
`
	if _, err := cluster.KIn(manifest, "apply", "-n", namespace, "-f", "-"); err != nil {
		return err
	}
	if _, err := cluster.K("wait", "-n", namespace, "--for=condition=Ready", "pod/target", "--timeout=60s"); err != nil {
		return err
	}
	wd, err := os.MkdirTemp("", "doppel-bench-kube")
	if err != nil {
		return err
	}
	defer os.RemoveAll(wd)
	os.MkdirAll(filepath.Join(wd, ".doppel"), 0o755)
	cfg := fmt.Sprintf("target: {path: pod/target, namespace: %s}\nagent: {image: %q, image_pull_policy: Never, communication_timeout: 2, ttl: 1}\n", namespace, agentImage)
	if err := os.WriteFile(filepath.Join(wd, ".doppel", "config.yaml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	doppelBin, err := filepath.Abs(*doppel)
	if err != nil {
		return err
	}
	dexecWith := func(bin string, args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"exec", "--"}, args...)...)
		cmd.Dir = wd
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("doppel exec %v: %v\n%s", args, err, errOut.String())
		}
		return out.String(), nil
	}
	dexec := func(args ...string) (string, error) { return dexecWith(doppelBin, args...) }

	var rows []row
	// Startup, cold: no agent for the target yet.
	var bare, cold, warm []float64
	for i := 0; i < *runs; i++ {
		if err := waitNoAgent(); err != nil {
			return err
		}
		start := time.Now()
		if _, err := dexec("true"); err != nil {
			return err
		}
		cold = append(cold, time.Since(start).Seconds())
		name := fmt.Sprintf("bare-%d", i)
		start = time.Now()
		if _, err := cluster.K("run", "-n", namespace, name, "--image=doppel.local/toolbox:dev", "--image-pull-policy=Never",
			"--restart=Never", "--", "sleep"); err != nil {
			return err
		}
		if _, err := cluster.K("wait", "-n", namespace, "--for=condition=Ready", "pod/"+name, "--timeout=60s"); err != nil {
			return err
		}
		bare = append(bare, time.Since(start).Seconds())
	}
	// Warm: a session keeps the agent; new sessions join it.
	keeper := exec.Command(doppelBin, "exec", "--", "sleep", "600")
	keeper.Dir = wd
	if err := keeper.Start(); err != nil {
		return err
	}
	defer func() { keeper.Process.Signal(os.Interrupt); keeper.Wait() }()
	if _, err := dexec("true"); err != nil { // wait until the agent is up
		return err
	}
	for i := 0; i < *runs; i++ {
		start := time.Now()
		if _, err := dexec("true"); err != nil {
			return err
		}
		warm = append(warm, time.Since(start).Seconds())
	}
	rows = append(rows,
		row{"start, cold (new agent pod) vs bare pod start", stats.Median(cold), stats.Median(bare), "s", "kubectl run + Ready"},
		row{"start, warm (agent running) vs bare pod start", stats.Median(warm), stats.Median(bare), "s", "kubectl run + Ready"})

	// Outgoing through doppel vs kubectl port-forward to the same Service.
	pf := exec.Command(cluster.Kubectl(), "port-forward", "-n", namespace, "svc/bulk", ":80")
	var pfOut bytes.Buffer
	pf.Stdout = &pfOut
	if err := pf.Start(); err != nil {
		return err
	}
	defer func() { pf.Process.Kill(); pf.Wait() }()
	var local string
	for i := 0; i < 100 && local == ""; i++ {
		time.Sleep(100 * time.Millisecond)
		if m := regexp.MustCompile(`127\.0\.0\.1:(\d+)`).FindStringSubmatch(pfOut.String()); m != nil {
			local = "127.0.0.1:" + m[1]
		}
	}
	if local == "" {
		return fmt.Errorf("kubectl port-forward did not start: %s", pfOut.String())
	}
	speed := func(host string) string {
		return fmt.Sprintf("curl -s -o /dev/null -w '%%{speed_download}\\n' http://%s/bytes/%d", host, *mib)
	}
	// By ClusterIP, as the port-forward baseline has no name to resolve.
	ip, err := cluster.K("get", "svc", "bulk", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		return err
	}
	svc := strings.TrimSpace(ip)
	var tDoppel, tOther, tPF []float64
	for i := 0; i < *runs; i++ {
		out, err := dexec("sh", "-c", speed(svc))
		if err != nil {
			return err
		}
		tDoppel = append(tDoppel, num(out)/1e6)
		if *other != "" {
			out, err := dexecWith(*other, "sh", "-c", speed(svc))
			if err != nil {
				return err
			}
			tOther = append(tOther, num(out)/1e6)
		}
		out2, err := exec.Command("sh", "-c", speed(local)).Output()
		if err != nil {
			return err
		}
		tPF = append(tPF, num(string(out2))/1e6)
	}
	rows = append(rows, row{fmt.Sprintf("throughput, %d MiB from a Service", *mib), stats.Median(tDoppel), stats.Median(tPF), "MB/s", "kubectl port-forward"})
	if *other != "" {
		rows = append(rows, row{"throughput, " + *other, stats.Median(tOther), stats.Median(tPF), "MB/s", "kubectl port-forward"},
			row{"throughput, this build vs " + *other, stats.Median(stats.Ratios(tDoppel, tOther)), 1, "x", "per round"})
	}

	// Latency: the requests are split into rounds, doppel's and kubectl
	// port-forward's alternating, so that both sides see the same drift of
	// the machine's speed.
	per := max(*requests / *rounds, 1)
	loop := func(host string) string {
		return fmt.Sprintf(`for i in $(seq %d); do curl -s -o /dev/null -w '%%{time_total}\n' http://%s/healthz; done`, per, host)
	}
	// The same requests on one kept connection: the round trip through
	// the port-forward that every new connection pays on top of its own
	// setup, for both paths.
	kept := func(host string) string {
		args := strings.Repeat(fmt.Sprintf(" -o /dev/null http://%s/healthz", host), per+1)
		return fmt.Sprintf(`curl -s -w '%%{num_connects} %%{time_total}\n'%s`, args)
	}
	// both runs cmd's requests through doppel, then through kubectl
	// port-forward; agent, if not nil, adds what the agent spent on the
	// requests through doppel.
	both := func(cmd func(host string) string, agent *agentSample) (viaDoppel, viaPF string, err error) {
		before, serr := sampleAgent()
		if viaDoppel, err = dexec("bash", "-c", cmd(svc)); err != nil {
			return "", "", err
		}
		if after, aerr := sampleAgent(); agent != nil && serr == nil && aerr == nil {
			agent.cpu += after.cpu - before.cpu
			agent.switches += after.switches - before.switches
		}
		out, err := exec.Command("bash", "-c", cmd(local)).Output()
		return viaDoppel, string(out), err
	}
	var lDoppel, lPF, kDoppel, kPF []float64
	var agent agentSample // over the new-connection requests
	for range *rounds {
		d, pf, err := both(loop, &agent)
		if err != nil {
			return err
		}
		lDoppel, lPF = append(lDoppel, nums(d)...), append(lPF, nums(pf)...)
		if d, pf, err = both(kept, nil); err != nil {
			return err
		}
		kd, err := keptTimes(d)
		if err != nil {
			return err
		}
		kp, err := keptTimes(pf)
		if err != nil {
			return err
		}
		kDoppel, kPF = append(kDoppel, kd...), append(kPF, kp...)
	}
	rows = append(rows,
		row{"request on a new connection, p50", 1000 * stats.Percentile(lDoppel, 50), 1000 * stats.Percentile(lPF, 50), "ms", "kubectl port-forward"},
		row{"request on a new connection, p99", 1000 * stats.Percentile(lDoppel, 99), 1000 * stats.Percentile(lPF, 99), "ms", "kubectl port-forward"},
		row{"request on a kept connection, p50", 1000 * stats.Percentile(kDoppel, 50), 1000 * stats.Percentile(kPF, 50), "ms", "kubectl port-forward"},
		row{"new connection's cost beyond a kept one, p50", 1000 * (stats.Percentile(lDoppel, 50) - stats.Percentile(kDoppel, 50)),
			1000 * (stats.Percentile(lPF, 50) - stats.Percentile(kPF, 50)), "ms", "kubectl port-forward"})

	print(rows)
	if n := float64(len(lDoppel)); n > 0 && agent.cpu > 0 {
		fmt.Printf("agent per new connection: %.0f µs of CPU, %.1f context switches\n", agent.cpu*1e6/n, agent.switches/n)
	}
	rss, err := agentRSS()
	if err != nil {
		fmt.Println("agent idle RSS: ", err)
	} else {
		fmt.Printf("agent idle RSS (one session): %.1f MiB\n", rss)
	}
	if size, err := imageSize(); err == nil {
		fmt.Printf("agent image %s: %.2f MiB compressed\n", agentImage, size)
	}
	return nil
}

// waitNoAgent waits until no agent pod runs in the namespace (the last
// session's idle window and the Job's TTL).
func waitNoAgent() error {
	for i := 0; i < 300; i++ {
		out, err := cluster.K("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=doppel-agent", "-o", "name")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) == "" {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the agent did not go away")
}

// agentSample is the agent process's CPU time (s) and context switches
// (all its threads) so far.
type agentSample struct{ cpu, switches float64 }

func sampleAgent() (agentSample, error) {
	dir, err := procfs.Agent()
	if err != nil {
		return agentSample{}, err
	}
	cpu, err := procfs.CPU(dir)
	return agentSample{cpu: cpu, switches: procfs.Switches(dir)}, err
}

// agentRSS reads the resident memory of the agent process on this node.
func agentRSS() (float64, error) {
	dir, err := procfs.Agent()
	if err != nil {
		return 0, err
	}
	return procfs.RSS(dir)
}

func imageSize() (float64, error) {
	tag := strings.TrimPrefix(agentImage, "doppel-agent:")
	st, err := os.Stat(filepath.Join("bin", "doppel-agent-"+tag+".tar"))
	if err != nil {
		return 0, err
	}
	return float64(st.Size()) / (1 << 20), nil
}

func num(s string) float64 {
	f, _ := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f
}

func nums(s string) []float64 {
	var out []float64
	for _, f := range strings.Fields(s) {
		out = append(out, num(f))
	}
	return out
}

// keptTimes reads curl's "num_connects time_total" lines of transfers on
// one connection; the first, which connected, is left out.
func keptTimes(out string) ([]float64, error) {
	var times []float64
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("unexpected curl output %q", line)
		}
		if i == 0 {
			continue
		}
		if f[0] != "0" {
			return nil, fmt.Errorf("curl opened a new connection for transfer %d: the connection was not kept", i+1)
		}
		times = append(times, num(f[1]))
	}
	if len(times) == 0 {
		return nil, fmt.Errorf("no transfers on a kept connection")
	}
	return times, nil
}

func print(rows []row) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "measurement\tdoppel\tbaseline\tdoppel/baseline\tunit\tbaseline is\t")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%.2f\t%.2f\t%.2fx\t%s\t%s\t\n", r.name, r.doppel, r.without, r.doppel/r.without, r.unit, r.baseline)
	}
	w.Flush()
}
