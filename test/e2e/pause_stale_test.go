//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/doppel-dev/doppel/agent/target"
	"github.com/doppel-dev/doppel/helper/kube"
	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// freezerState is the cgroup v1 freezer.state file of a container of this
// node (the test runs on the node).
func freezerState(t *testing.T, containerID string) string {
	t.Helper()
	pid, err := target.FindContainer("/proc", containerID)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && parts[1] == "freezer" {
			return filepath.Join("/sys/fs/cgroup/freezer", parts[2], "freezer.state")
		}
	}
	t.Fatalf("no freezer cgroup for %s", containerID)
	return ""
}

// TestPauseStaleLease: a freeze whose session, agent and guardians are all
// gone (a crashed laptop and a restarted agent node, say) is found through
// its expired lease by `doppel cleanup` and by any later doppel run in the
// namespace, and thawed.
func TestPauseStaleLease(t *testing.T) {
	q := newQueueEnv(t, "pause-stale")
	// Agents kept in a namespace of their own: the leases are still on
	// the targets, in theirs.
	agents := "  namespace: " + cluster.Namespace(t, "pause-stale-agents") + "\n"
	for _, finder := range []struct {
		name  string
		args  []string
		agent string // more of the config's agent section
	}{
		{"doppel cleanup", []string{"cleanup", "-n", q.ns}, ""},
		{"doppel cleanup with agent.namespace", []string{"cleanup"}, agents},
		{"a later doppel run", []string{"exec", "--", "true"}, ""},
	} {
		t.Run(finder.name, func(t *testing.T) { staleFreeze(t, q, finder.args, finder.agent) })
	}
}

// staleFreeze freezes the queue's container as a crashed session leaves
// it, then runs doppel with args, which must thaw it.
func staleFreeze(t *testing.T, q *queueEnv, args []string, agent string) {
	ctx := framework.Context(t, 3*time.Minute)
	podName := readyPodOf(t, ctx, q.ns, "app=queue")
	pod, err := cluster.Client.CoreV1().Pods(q.ns).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := pod.Status.ContainerStatuses[0].ContainerID
	state := freezerState(t, id)
	// What a crashed session leaves: the container frozen and a lease on
	// the pod that nobody renews.
	if err := os.WriteFile(state, []byte("FROZEN"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(state, []byte("THAWED"), 0o644) })
	lease, _ := json.Marshal(kube.Lease{Kind: kube.LeaseFreeze, ContainerID: id, Node: pod.Spec.NodeName,
		Holders: map[string]time.Time{"crashed-session": time.Now().Add(-time.Minute)}})
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{kube.AnnotationLease: string(lease)}}})
	if _, err := cluster.Client.CoreV1().Pods(q.ns).Patch(ctx, podName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	p := startDoppel(t, configDir(t, execConfig(t, q.ns, "deployment/queue")+agent), nil, args...)
	if err := p.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("doppel %v: %v\n%s%s", args, err, p.stdout.String(), p.stderr.String())
	}
	t.Logf("doppel %v:\n%s%s", args, p.stdout.String(), p.stderr.String())
	framework.Eventually(t, time.Minute, func() error {
		b, _ := os.ReadFile(state)
		if s := strings.TrimSpace(string(b)); s != "THAWED" {
			return fmt.Errorf("freezer.state %s", s)
		}
		return nil
	})
	after, err := cluster.Client.CoreV1().Pods(q.ns).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := after.Annotations[kube.AnnotationLease]; v != "" {
		t.Errorf("the stale lease is still on the pod: %s", v)
	}
	took := q.expectConsumer(t, "cluster", 30*time.Second)
	t.Logf("the cluster consumer took a row %s after the thaw", took.Round(time.Millisecond))
}
