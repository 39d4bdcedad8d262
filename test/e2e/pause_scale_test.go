//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/doppel-dev/doppel/helper/kube"
	"github.com/doppel-dev/doppel/test/e2e/framework"
)

const scaleDown = "feature:\n  copy_target:\n    scale_down: true\n"

// restored waits until the queue deployment has its replica back, no copy
// pod is left and the cluster consumer takes rows again; it returns how
// long that took.
func (q *queueEnv) restored(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	framework.Eventually(t, within, func() error {
		if n := q.replicas(t); n != 1 {
			return fmt.Errorf("queue has %d replicas", n)
		}
		pods, err := cluster.Client.CoreV1().Pods(q.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "doppel.dev/copy-of"})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("copy pod %s is left", pods.Items[0].Name)
		}
		return nil
	})
	q.expectConsumer(t, "cluster", time.Minute)
	return time.Since(start)
}

func TestPauseScaleDown(t *testing.T) {
	q := newQueueEnv(t, "pause-scale")
	p := q.startLocalConsumer(t, "deployment/queue", scaleDown, "local")
	if n := q.replicas(t); n != 0 {
		t.Errorf("queue has %d replicas during the session", n)
	}
	if !strings.Contains(p.stderr.String(), "scaling deployment/queue to 0 (from 1)") {
		t.Errorf("doppel did not say it scaled the workload down:\n%s", p.stderr.String())
	}
	// Its pod is gone: only the local consumer works.
	framework.Eventually(t, time.Minute, func() error {
		pods, _ := cluster.Client.CoreV1().Pods(q.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=queue"})
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d queue pods left", len(pods.Items))
		}
		return nil
	})
	q.onlyLocal(t, "local")

	// A second session joins the copy; the scale-down lasts until both end.
	p2 := q.startLocalConsumer(t, "deployment/queue", scaleDown, "local2")
	if !strings.Contains(p2.stderr.String(), "joining the copy pod") {
		t.Errorf("the second session did not join the copy:\n%s", p2.stderr.String())
	}
	stop(t, p)
	if n := q.replicas(t); n != 0 {
		t.Errorf("queue has %d replicas while a session still runs", n)
	}
	q.onlyLocal(t, "local2")
	stop(t, p2)
	took := q.restored(t, time.Minute)
	t.Logf("restored and consuming %s after the last session ended", took.Round(time.Millisecond))
}

func TestPauseScaleDownKilled(t *testing.T) {
	q := newQueueEnv(t, "pause-scale-kill")
	for _, what := range []string{"helper", "agent", "both"} {
		t.Run(what, func(t *testing.T) {
			p := q.startLocalConsumer(t, "deployment/queue", scaleDown, "local")
			q.onlyLocal(t, "local")
			killed := killCase(t, q, p, what)
			if what == "agent" {
				// The helper reports the lost agent and gives the workload
				// back at once, while the local process still runs.
				framework.Eventually(t, 45*time.Second, func() error {
					if !strings.Contains(p.stderr.String(), "the session with the agent has ended") {
						return fmt.Errorf("doppel has not noticed")
					}
					return nil
				})
			}
			took := q.restored(t, time.Minute)
			t.Logf("SIGKILL of the %s: replicas restored, copy gone and consuming %s later (%s after the check began)",
				what, time.Since(killed).Round(time.Millisecond), took.Round(time.Millisecond))
		})
	}
}

// A start that fails after the scale-down gives the workload back before
// doppel exits, not later through the lease guardian: the copy pod's
// agent image can't be had, or the copy runs and the agent pod can't be
// scheduled.
func TestPauseScaleDownStartFails(t *testing.T) {
	q := newQueueEnv(t, "pause-scale-fail")
	for _, tc := range []struct{ name, agent, want string }{
		{"copy pod", "  image: doppel-agent:no-such-tag\n  image_pull_policy: Never\n", "cannot get the agent image"},
		{"agent pod", fmt.Sprintf("  image: %s\n  image_pull_policy: Never\n  resources: {requests: {cpu: \"64\"}}\n", agentImage(t)), "cannot be scheduled"},
	} {
		t.Run(tc.name, func(t *testing.T) { scaleDownStartFails(t, q, tc.agent, tc.want) })
	}
}

func scaleDownStartFails(t *testing.T, q *queueEnv, agent, want string) {
	cfg := fmt.Sprintf("target:\n  path: deployment/queue\n  namespace: %s\nagent:\n", q.ns) + agent + scaleDown
	p := startDoppel(t, configDir(t, cfg), nil, "exec", "--", "true")
	if err := p.wait(t, 2*time.Minute); err == nil {
		t.Fatalf("doppel exec succeeded:\n%s", p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "scaling deployment/queue to 0 (from 1)") || !strings.Contains(p.stderr.String(), want) {
		t.Fatalf("want a failure after the scale-down, saying %q:\n%s", want, p.stderr.String())
	}
	// At once: the session ended its lease on its way out.
	if n := q.replicas(t); n != 1 {
		t.Errorf("queue has %d replicas right after the failed start:\n%s", n, p.stderr.String())
	}
	pods, err := cluster.Client.CoreV1().Pods(q.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "doppel.dev/copy-of"})
	if err != nil {
		t.Fatal(err)
	}
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp == nil {
			t.Errorf("copy pod %s is left after the failed start", pod.Name)
		}
	}
	q.restored(t, time.Minute)
}

// ^C while the copy pod starts (here it never can: its ConfigMap went away
// after the workload's own pod started) stops the start and gives the
// workload back before doppel exits.
func TestPauseScaleDownInterrupted(t *testing.T) {
	ns := cluster.Namespace(t, "pause-scale-int")
	ctx := framework.Context(t, 3*time.Minute)
	cs := cluster.Client
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"},
		Data: map[string]string{"mode": "staging"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tmpl := toolboxTemplate("slow", "sleep")
	tmpl.Spec.Volumes = []corev1.Volume{{Name: "settings", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}}
	tmpl.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "settings", MountPath: "/settings"}}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "slow"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "slow"}},
			Template: tmpl},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	readyPodOf(t, ctx, ns, "app=slow")
	if err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, "settings", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	p := startDoppel(t, configDir(t, execConfig(t, ns, "deployment/slow")+scaleDown), nil, "exec", "--", "true")
	framework.Eventually(t, time.Minute, func() error {
		if !strings.Contains(p.stderr.String(), "waiting for the copy pod") {
			return fmt.Errorf("doppel is not waiting for the copy pod yet:\n%s", p.stderr.String())
		}
		return nil
	})
	// The copy pod stays ContainerCreating, no dead end doppel could see:
	// the session renews its holds meanwhile (a slow image pull must not
	// let them go stale under it).
	time.Sleep(kube.LeaseRenew + 2*time.Second)
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "slow", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := kube.ParseLease(d.Annotations[kube.AnnotationLease]); l == nil || len(l.Holders) != 1 {
		t.Errorf("the scale-down lease while the copy starts: %+v", l)
	} else {
		for _, exp := range l.Holders {
			if left := time.Until(exp); left < kube.LeaseDuration-5*time.Second {
				t.Errorf("the hold expires in %s while the copy starts: not renewed", left.Round(time.Second))
			}
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = p.wait(t, time.Minute)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Errorf("doppel exec after SIGINT: %v, want exit status 130\n%s", err, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "interrupt while starting") {
		t.Errorf("doppel did not say it stopped the start:\n%s", p.stderr.String())
	}
	if d, err = cs.AppsV1().Deployments(ns).Get(ctx, "slow", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 1 {
		t.Errorf("slow has %d replicas right after the interrupted start:\n%s", *d.Spec.Replicas, p.stderr.String())
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "doppel.dev/copy-of"})
	if err != nil {
		t.Fatal(err)
	}
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp == nil {
			t.Errorf("copy pod %s is left after the interrupted start", pod.Name)
		}
	}
}

// A StatefulSet is scaled down and given back the same way.
func TestPauseScaleDownStatefulSet(t *testing.T) {
	q := newQueueEnv(t, "pause-sts")
	ctx := framework.Context(t, 3*time.Minute)
	// The same consumer as a StatefulSet, the Deployment's out of the way.
	dep, err := cluster.Client.AppsV1().Deployments(q.ns).Get(ctx, "queue", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "queue-sts"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr(int32(1)),
			ServiceName: "queue-sts",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "queue-sts"}},
			Template:    dep.Spec.Template,
		},
	}
	sts.Spec.Template.Labels = map[string]string{"app": "queue-sts"}
	if _, err := cluster.Client.AppsV1().StatefulSets(q.ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	zero := []byte(`{"spec":{"replicas":0}}`)
	if _, err := cluster.Client.AppsV1().Deployments(q.ns).Patch(ctx, "queue", types.MergePatchType, zero, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	readyPodOf(t, ctx, q.ns, "app=queue-sts")
	q.expectConsumer(t, "cluster", time.Minute)
	stsReplicas := func() int32 {
		s, err := cluster.Client.AppsV1().StatefulSets(q.ns).Get(ctx, "queue-sts", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *s.Spec.Replicas
	}

	p := q.startLocalConsumer(t, "statefulset/queue-sts", scaleDown, "local")
	if n := stsReplicas(); n != 0 {
		t.Errorf("queue-sts has %d replicas during the session", n)
	}
	q.onlyLocal(t, "local")
	stop(t, p)
	framework.Eventually(t, time.Minute, func() error {
		if n := stsReplicas(); n != 1 {
			return fmt.Errorf("queue-sts has %d replicas", n)
		}
		return nil
	})
	took := q.expectConsumer(t, "cluster", time.Minute)
	t.Logf("the StatefulSet's consumer took a row %s after its replicas came back", took.Round(time.Millisecond))
}

func ptr[T any](v T) *T { return &v }
