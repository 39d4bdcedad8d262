//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doppel-dev/doppel/agent/target"
	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// The cleanup guarantees: a helper killed with SIGKILL leaves no agent
// behind (its pod is gone within 30 s), a killed agent is reported clearly
// and leaves the target untouched, and `doppel cleanup` removes leftovers.

const agentSelector = "app.kubernetes.io/name=doppel-agent"

// sleeper runs a target pod in a fresh namespace and returns both.
func sleeper(t *testing.T, prefix string) (string, *corev1.Pod) {
	ns := cluster.Namespace(t, prefix)
	echoService(t, ns)
	return ns, cluster.RunPod(t, ns, framework.ToolboxPod("target", "sleep"))
}

// agentPod waits for the one running agent pod of ns.
func agentPod(t *testing.T, ctx context.Context, ns string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	framework.Eventually(t, time.Minute, func() error {
		pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
		if err != nil {
			return err
		}
		// The newest live one: an agent killed a moment ago can still be
		// listed as running while its successor serves the session.
		pod = nil
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil ||
				len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Running == nil {
				continue
			}
			if _, err := target.FindContainer("/proc", p.Status.ContainerStatuses[0].ContainerID); err != nil {
				continue // its process is gone: the kubelet has not noticed yet
			}
			if pod == nil || p.CreationTimestamp.After(pod.CreationTimestamp.Time) {
				pod = p
			}
		}
		if pod == nil {
			return fmt.Errorf("no running agent pod in %s (%d pods)", ns, len(pods.Items))
		}
		return nil
	})
	return pod
}

// noAgents waits until ns has no agent pod and no agent Job, and returns
// how long that took.
func noAgents(t *testing.T, ctx context.Context, ns string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	framework.Eventually(t, within, func() error {
		pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
		if err != nil {
			return err
		}
		jobs, err := cluster.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
		if err != nil {
			return err
		}
		if n := len(pods.Items) + len(jobs.Items); n > 0 {
			return fmt.Errorf("%d agent pods and %d agent jobs left in %s", len(pods.Items), len(jobs.Items), ns)
		}
		return nil
	})
	return time.Since(start)
}

// untouched fails unless the target pod is the same, running and never
// restarted.
func untouched(t *testing.T, ctx context.Context, before *corev1.Pod) {
	t.Helper()
	after, err := cluster.Client.CoreV1().Pods(before.Namespace).Get(ctx, before.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := after.Status.ContainerStatuses
	if after.UID != before.UID || len(st) != 1 || st[0].RestartCount != 0 || st[0].State.Running == nil || !st[0].Ready {
		t.Errorf("the target pod was disturbed: %s", after.Status.String())
	}
}

func TestExecHelperKilled(t *testing.T) {
	ns, tgt := sleeper(t, "helper-killed")
	ctx := framework.Context(t, 3*time.Minute)
	p := startDoppel(t, configDir(t, execConfig(t, ns, "pod/target")), nil,
		"exec", "--", "bash", "-c", `echo "started $(curl -s --max-time 10 http://echo/env/GREETING)"; exec sleep 300`)
	p.waitOutput(t, "started hi from "+ns, time.Minute)
	agentPod(t, ctx, ns)

	// The helper alone dies; its agent must notice and go.
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := noAgents(t, ctx, ns, 30*time.Second)
	t.Logf("agent pod and job gone %s after the helper's SIGKILL", took.Round(time.Millisecond))
	untouched(t, ctx, tgt)
}

func TestExecAgentKilled(t *testing.T) {
	ns, tgt := sleeper(t, "agent-killed")
	ctx := framework.Context(t, 3*time.Minute)
	p := startDoppel(t, configDir(t, execConfig(t, ns, "pod/target")), nil,
		"exec", "--", "bash", "-c", `echo started; exec sleep 300`)
	p.waitOutput(t, "started", time.Minute)
	agent := agentPod(t, ctx, ns)

	// The node is this machine: kill the agent's process itself.
	pid, err := target.FindContainer("/proc", agent.Status.ContainerStatuses[0].ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 45*time.Second, func() error {
		if !strings.Contains(p.stderr.String(), "the session with the agent has ended") {
			return fmt.Errorf("doppel has not said the agent is gone; stderr:\n%s", p.stderr.String())
		}
		return nil
	})
	t.Logf("doppel said so %s after the agent's SIGKILL", time.Since(killed).Round(time.Millisecond))
	stderr := p.stderr.String()
	if !strings.Contains(stderr, "killed by SIGKILL") && !strings.Contains(stderr, "is gone (deleted)") {
		t.Errorf("doppel does not say what became of the agent:\n%s", stderr)
	}
	untouched(t, ctx, tgt)
}

func TestDoppelCleanup(t *testing.T) {
	ns, tgt := sleeper(t, "cleanup")
	ctx := framework.Context(t, 3*time.Minute)
	// A long idle window keeps the agent after the session: a leftover.
	config := strings.Replace(execConfig(t, ns, "pod/target"), "agent:\n", "agent:\n  communication_timeout: 600\n", 1)
	wd := configDir(t, config)
	if err := startDoppel(t, wd, nil, "exec", "--", "true").wait(t, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	agent := agentPod(t, ctx, ns)

	p := startDoppel(t, wd, nil, "cleanup", "-n", ns)
	if err := p.wait(t, time.Minute); err != nil {
		t.Fatalf("doppel cleanup: %v\n%s%s", err, p.stdout.String(), p.stderr.String())
	}
	if out := p.stdout.String(); !strings.Contains(out, "removed job "+ns+"/"+agent.Labels["job-name"]) {
		t.Errorf("doppel cleanup did not report the agent job %s:\n%s", agent.Labels["job-name"], out)
	}
	took := noAgents(t, ctx, ns, 30*time.Second)
	t.Logf("agent gone %s after doppel cleanup", took.Round(time.Millisecond))
	untouched(t, ctx, tgt)

	p = startDoppel(t, wd, nil, "cleanup", "-n", ns)
	if err := p.wait(t, time.Minute); err != nil || !strings.Contains(p.stdout.String(), "nothing to remove") {
		t.Errorf("a second cleanup: %v\n%s", err, p.stdout.String())
	}
}
