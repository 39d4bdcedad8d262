//go:build e2e

package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doppel-dev/doppel/agent/target"
	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// Pausing the remote service while it runs locally (docs/pause.md): a
// queue consumer in the cluster (test/apps/queue, deployment "queue",
// consumer name "cluster") and the same program run locally under doppel
// as "local" share a Postgres table. While a session freezes the target
// or scales it down, only "local" consumes; afterwards "cluster" does
// again — also after SIGKILL of the helper, the agent or both.

const queueManifest = `apiVersion: v1
kind: Secret
metadata: {name: pg, namespace: __NS__}
stringData: {DB_USER: queue, DB_PASSWORD: queue-pass, DB_NAME: queue, POSTGRES_USER: queue, POSTGRES_PASSWORD: queue-pass, POSTGRES_DB: queue}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: postgres, namespace: __NS__}
spec:
  replicas: 1
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      terminationGracePeriodSeconds: 1
      securityContext: {runAsUser: 999, runAsGroup: 999, fsGroup: 999, runAsNonRoot: true}
      containers:
        - name: postgres
          image: doppel.local/staging-postgres:dev
          imagePullPolicy: Never
          envFrom: [{secretRef: {name: pg}}]
          ports: [{name: postgres, containerPort: 5432}]
          readinessProbe: {tcpSocket: {port: 5432}, periodSeconds: 1}
          volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: postgres, namespace: __NS__}
spec:
  selector: {app: postgres}
  ports: [{port: 5432, targetPort: postgres}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: queue, namespace: __NS__}
spec:
  replicas: 1
  selector: {matchLabels: {app: queue}}
  template:
    metadata: {labels: {app: queue}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: queue
          image: doppel.local/queue:dev
          imagePullPolicy: Never
          args: ["-interval", "50ms"]
          envFrom: [{secretRef: {name: pg}}]
          env:
            - {name: DB_HOST, value: postgres}
            - {name: CONSUMER_NAME, value: cluster}
`

// queueEnv is a namespace with Postgres and the queue deployment, and a
// connection to the database.
type queueEnv struct {
	ns string
	db *sql.DB
}

var buildQueue = buildOnce("queue", "./test/apps/queue")

func newQueueEnv(t *testing.T, prefix string) *queueEnv {
	t.Helper()
	ns := cluster.Namespace(t, prefix)
	ctx := framework.Context(t, 3*time.Minute)
	file := filepath.Join(t.TempDir(), "queue.yaml")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(queueManifest, "__NS__", ns)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Apply(ctx, file); err != nil {
		t.Fatal(err)
	}
	pg := readyPodOf(t, ctx, ns, "app=postgres")
	readyPodOf(t, ctx, ns, "app=queue")
	addr := cluster.PortForward(t, ns, pg, 5432)
	db, err := sql.Open("postgres", "host=127.0.0.1 port="+strings.Split(addr, ":")[1]+" user=queue password=queue-pass dbname=queue sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	q := &queueEnv{ns: ns, db: db}
	// The cluster consumer runs: it creates the table and takes a row.
	q.expectConsumer(t, "cluster", 90*time.Second)
	return q
}

// readyPodOf waits for a running pod with the label selector.
func readyPodOf(t *testing.T, ctx context.Context, ns, selector string) string {
	t.Helper()
	name := ""
	framework.Eventually(t, 2*time.Minute, func() error {
		pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			ready := false
			for _, c := range p.Status.Conditions {
				ready = ready || (c.Type == "Ready" && c.Status == "True")
			}
			if p.Status.Phase == "Running" && ready && p.DeletionTimestamp == nil {
				name = p.Name
				return nil
			}
		}
		return fmt.Errorf("no running pod %s in %s", selector, ns)
	})
	return name
}

// insert adds n rows and returns the highest id before them.
func (q *queueEnv) insert(t *testing.T, n int) int64 {
	t.Helper()
	var mark int64
	framework.Eventually(t, time.Minute, func() error {
		if err := q.db.QueryRow(`SELECT coalesce(max(id), 0) FROM jobs`).Scan(&mark); err != nil {
			return err
		}
		_, err := q.db.Exec(`INSERT INTO jobs (payload) SELECT 'job ' || g FROM generate_series(1, $1) g`, n)
		return err
	})
	return mark
}

// consumers waits until every row after mark is consumed and returns the
// count per consumer.
func (q *queueEnv) consumers(t *testing.T, mark int64, within time.Duration) map[string]int {
	t.Helper()
	got := map[string]int{}
	framework.Eventually(t, within, func() error {
		var free int
		if err := q.db.QueryRow(`SELECT count(*) FROM jobs WHERE id > $1 AND consumer IS NULL`, mark).Scan(&free); err != nil {
			return err
		}
		if free > 0 {
			return fmt.Errorf("%d rows not consumed yet", free)
		}
		rows, err := q.db.Query(`SELECT consumer, count(*) FROM jobs WHERE id > $1 GROUP BY consumer`, mark)
		if err != nil {
			return err
		}
		defer rows.Close()
		clear(got)
		for rows.Next() {
			var c string
			var n int
			rows.Scan(&c, &n)
			got[c] = n
		}
		return rows.Err()
	})
	return got
}

// expectConsumer inserts a row and waits until who consumed it; it
// returns how long that took.
func (q *queueEnv) expectConsumer(t *testing.T, who string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	framework.Eventually(t, within, func() error {
		var c sql.NullString
		err := q.db.QueryRow(`SELECT consumer FROM jobs WHERE id = (SELECT max(id) FROM jobs)`).Scan(&c)
		if err == nil && c.String == who {
			return nil
		}
		if err == nil && c.Valid {
			// Consumed by someone else: offer another row.
			q.db.Exec(`INSERT INTO jobs (payload) VALUES ('probe')`)
			return fmt.Errorf("the last row went to %q, not %q", c.String, who)
		}
		if err == sql.ErrNoRows || (err != nil && strings.Contains(err.Error(), "does not exist")) {
			q.db.Exec(`INSERT INTO jobs (payload) VALUES ('probe')`)
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("the last row is not consumed yet")
	})
	return time.Since(start)
}

// startLocalConsumer runs the queue program locally under doppel with
// extra config lines, and waits until it is ready.
func (q *queueEnv) startLocalConsumer(t *testing.T, target, extra, name string) *doppelProc {
	t.Helper()
	bin, err := buildQueue()
	if err != nil {
		t.Fatal(err)
	}
	cfg := execConfig(t, q.ns, target) + extra
	p := startDoppel(t, configDir(t, cfg), nil, "exec", "--", bin, "-name", name, "-interval", "50ms")
	framework.Eventually(t, 2*time.Minute, func() error {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("doppel exited (%v):\n%s%s", err, p.stdout.String(), p.stderr.String())
		default:
		}
		if !strings.Contains(p.stderr.String(), "consumer "+name+" ready") {
			return fmt.Errorf("the local consumer is not ready; stderr:\n%s", p.stderr.String())
		}
		return nil
	})
	return p
}

// onlyLocal checks that while the session pauses the cluster consumer,
// the local one takes every row.
func (q *queueEnv) onlyLocal(t *testing.T, names ...string) {
	t.Helper()
	mark := q.insert(t, 20)
	got := q.consumers(t, mark, time.Minute)
	total := 0
	for _, n := range names {
		total += got[n]
	}
	if total != 20 || got["cluster"] != 0 {
		t.Errorf("while paused, rows went to %v; want all 20 to %v", got, names)
	}
}

// stop ends a doppel session as a user would (^C reaches the command,
// which exits, and the session ends).
func stop(t *testing.T, p *doppelProc) {
	t.Helper()
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("doppel did not end after ^C:\n%s", p.stderr.String())
	}
}

func TestPauseFreeze(t *testing.T) {
	q := newQueueEnv(t, "pause-freeze")
	p := q.startLocalConsumer(t, "deployment/queue", "pause: true\n", "local")
	if !strings.Contains(p.stderr.String(), "froze ") {
		t.Errorf("doppel did not say it froze the target:\n%s", p.stderr.String())
	}
	q.onlyLocal(t, "local")

	// A second session on the same target: the freeze lasts until both end.
	p2 := q.startLocalConsumer(t, "deployment/queue", "pause: true\n", "local2")
	stop(t, p)
	q.onlyLocal(t, "local2")
	stop(t, p2)
	took := q.expectConsumer(t, "cluster", 30*time.Second)
	t.Logf("the cluster consumer took a row %s after the last session ended", took.Round(time.Millisecond))
}

// killCase kills the helper, the agent or both of a paused session.
func killCase(t *testing.T, q *queueEnv, p *doppelProc, what string) time.Time {
	t.Helper()
	ctx := framework.Context(t, time.Minute)
	var agentPID int
	if what != "helper" {
		agent := agentPod(t, ctx, q.ns)
		pid, err := target.FindContainer("/proc", agent.Status.ContainerStatuses[0].ContainerID)
		if err != nil {
			t.Fatal(err)
		}
		agentPID = pid
	}
	killed := time.Now()
	if what != "agent" {
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	if agentPID != 0 {
		if err := syscall.Kill(agentPID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	if what != "agent" {
		// The local consumer is the helper's child: it goes with it here,
		// so that only the cluster can take the next rows.
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	return killed
}

func TestPauseFreezeKilled(t *testing.T) {
	q := newQueueEnv(t, "pause-freeze-kill")
	for _, what := range []string{"agent", "helper", "both"} {
		t.Run(what, func(t *testing.T) {
			p := q.startLocalConsumer(t, "deployment/queue", "pause: true\n", "local")
			q.onlyLocal(t, "local")
			killed := killCase(t, q, p, what)
			if what == "agent" {
				// The helper is alive: the local process must not take rows
				// any more once the session broke; stop it.
				syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			}
			q.expectConsumer(t, "cluster", 40*time.Second)
			t.Logf("SIGKILL of the %s: the cluster consumer took a row %s later", what, time.Since(killed).Round(time.Millisecond))
			noAgents(t, framework.Context(t, time.Minute), q.ns, 45*time.Second)
		})
	}
}

// replicas returns the queue deployment's replicas.
func (q *queueEnv) replicas(t *testing.T) int32 {
	t.Helper()
	d, err := cluster.Client.AppsV1().Deployments(q.ns).Get(context.Background(), "queue", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *d.Spec.Replicas
}

var _ = appsv1.Deployment{}
