package kube

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestLeaseHoldsAndExpiry(t *testing.T) {
	now := time.Now()
	l := &Lease{Kind: LeaseFreeze}
	l.Hold("a", now, LeaseDuration)
	l.Hold("b", now.Add(-time.Hour), LeaseDuration) // expired long ago
	if !l.Live(now) {
		t.Fatal("a fresh hold is not live")
	}
	l.Prune(now)
	if got := l.Sessions(); len(got) != 1 || got[0] != "a" {
		t.Errorf("after Prune: %v", got)
	}
	if l.Live(now.Add(LeaseDuration + time.Second)) {
		t.Error("a hold is live after its expiry")
	}
	if p, err := ParseLease(""); p != nil || err != nil {
		t.Errorf("empty annotation: %v %v", p, err)
	}
	if _, err := ParseLease("{"); err == nil {
		t.Error("a broken annotation parsed")
	}
}

func testClient(objs ...any) *Client {
	cs := fake.NewClientset()
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.Deployment:
			cs.Tracker().Add(o)
		case *corev1.Pod:
			cs.Tracker().Add(o)
		}
	}
	return &Client{Clientset: cs, Namespace: "ns"}
}

// The last of two sessions restores the replicas; an expired lease is
// ended by ReconcileStale, a live one is left alone.
func TestScaleDownLeaseLastHolderRestores(t *testing.T) {
	ctx := context.Background()
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "queue", Namespace: "ns"}, Spec: appsv1.DeploymentSpec{Replicas: ptrTo(int32(3))}}
	copyPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "queue-doppel-copy-x", Namespace: "ns"}}
	c := testClient(dep, copyPod)
	r := ObjectRef{"deployment", "ns", "queue"}
	for _, s := range []string{"s1", "s2"} {
		if _, err := c.acquire(ctx, r, s, func(*Lease) *Lease {
			return &Lease{Kind: LeaseScaleDown, Replicas: ptrTo(int32(3)), Copy: "queue-doppel-copy-x"}
		}); err != nil {
			t.Fatal(err)
		}
	}
	ann, _, _ := c.getAnnotations(ctx, r)
	l, _ := ParseLease(ann[AnnotationLease])
	if len(l.Holders) != 2 {
		t.Fatalf("holders %v", l.Holders)
	}
	// The fake client has no scale subresource: the end action fails at
	// scale, after the first release which must not end anything.
	if ended, err := c.release(ctx, r, "s1", false); ended || err != nil {
		t.Errorf("first release: ended %v, %v", ended, err)
	}
	ann, _, _ = c.getAnnotations(ctx, r)
	if l, _ = ParseLease(ann[AnnotationLease]); l == nil || len(l.Holders) != 1 {
		t.Errorf("after the first release: %+v", l)
	}
	// ReconcileStale leaves a live lease alone.
	if done, _ := c.ReconcileStale(ctx, "ns"); len(done) != 0 {
		t.Errorf("a live lease was ended: %v", done)
	}
}

func TestStaleCopyLeaseDeletesTheCopy(t *testing.T) {
	ctx := context.Background()
	stale := `{"kind":"copy","holders":{"gone":"2000-01-01T00:00:00Z"}}`
	copyPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "queue-doppel-copy-x", Namespace: "ns",
		Labels: map[string]string{LabelCopyOf: "deployment.queue"}, Annotations: map[string]string{AnnotationLease: stale}}}
	c := testClient(copyPod)
	done, err := c.ReconcileStale(ctx, "ns")
	if err != nil || len(done) != 1 {
		t.Fatalf("ReconcileStale: %v %v", done, err)
	}
	if _, err := c.Clientset.CoreV1().Pods("ns").Get(ctx, copyPod.Name, metav1.GetOptions{}); err == nil {
		t.Error("the stale copy pod is still there")
	}
}

func TestCopyPodHoldsTheTargetContainer(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "queue"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "queue", Image: "q:1",
			ReadinessProbe: &corev1.Probe{}, Env: []corev1.EnvVar{{Name: "A", Value: "1"}}}}},
	}
	p, err := copyPod(tmpl, "ns", TargetPathForTest("deployment", "queue"), "deployment", "alice", map[string]string{"extra": "x"}, AgentConfigForTest("agent:1"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Labels["app"] != "" || p.Labels[LabelCopyOf] != "deployment.queue" || p.Labels["extra"] != "x" || len(p.OwnerReferences) != 0 {
		t.Errorf("labels %v owners %v", p.Labels, p.OwnerReferences)
	}
	ctr := p.Spec.Containers[0]
	if ctr.Image != "q:1" || ctr.Env[0].Name != "A" || ctr.Args[0] != "hold" || ctr.ReadinessProbe != nil || p.Spec.NodeName != "" {
		t.Errorf("container %+v", ctr)
	}
	if len(p.Spec.InitContainers) != 1 || p.Spec.InitContainers[0].Image != "agent:1" {
		t.Errorf("init containers %+v", p.Spec.InitContainers)
	}
}

func TestCopyPodDeadEnd(t *testing.T) {
	waiting := func(reason string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "c", Image: "img", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
	}
	for _, tc := range []struct {
		name   string
		status corev1.PodStatus
		want   string // ReasonOf the error, "" for none
	}{
		{"pending", corev1.PodStatus{Phase: corev1.PodPending}, ""},
		{"init container pulling", corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{waiting("PodInitializing")}}, ""},
		{"agent image missing", corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{waiting("ErrImageNeverPull")}}, ReasonImagePull},
		{"init container failed", corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{{Name: "doppel-install",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}}}, ReasonAgentFailed},
		{"init container done", corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{{Name: "doppel-install",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}}}, ""},
		{"workload image missing", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{waiting("ImagePullBackOff")}}, ReasonImagePull},
		{"workload config broken", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{waiting("CreateContainerConfigError")}}, ReasonNotReady},
		{"unschedulable", corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available"}}}, ReasonUnschedulable},
		{"failed", corev1.PodStatus{Phase: corev1.PodFailed}, ReasonNotReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "queue-doppel-copy-x", Namespace: "ns"}, Status: tc.status}
			err := copyPodDeadEnd(p)
			if got := ReasonOf(err); got != tc.want || (tc.want == "") != (err == nil) {
				t.Errorf("copyPodDeadEnd: %v (reason %q), want reason %q", err, got, tc.want)
			}
		})
	}
}

// The last holder marks the lease as ending while it undoes it, and a
// session taking the lease waits for the end (else the restore under way
// would undo its scale-down); an end its ender never finished is stale
// after endingWait.
func TestLeaseEnding(t *testing.T) {
	ctx := context.Background()
	r := ObjectRef{"pod", "ns", "queue-doppel-copy-x"}
	c := testClient(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: r.Name, Namespace: "ns"}})
	if _, err := c.acquire(ctx, r, "s1", func(*Lease) *Lease { return &Lease{Kind: LeaseCopy} }); err != nil {
		t.Fatal(err)
	}
	var during *Lease
	cs := c.Clientset.(*fake.Clientset)
	cs.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		p, err := cs.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), "ns", r.Name)
		if err == nil {
			during, _ = ParseLease(p.(*corev1.Pod).Annotations[AnnotationLease])
		}
		return false, nil, nil
	})
	if ended, err := c.release(ctx, r, "s1", false); !ended || err != nil {
		t.Fatalf("release: ended %v, %v", ended, err)
	}
	if during == nil || during.Ending == nil {
		t.Errorf("while the copy was deleted the lease was %+v, want it marked as ending", during)
	}

	mark := func(l *Lease) {
		t.Helper()
		b, _ := json.Marshal(l)
		c.Clientset.CoreV1().Pods("ns").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns",
			Annotations: map[string]string{AnnotationLease: string(b)}}}, metav1.CreateOptions{})
	}
	p := ObjectRef{"pod", "ns", "p"}
	now := time.Now()
	mark(&Lease{Kind: LeaseFreeze, Ending: &now})
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := c.acquire(short, p, "s2", func(*Lease) *Lease { return &Lease{Kind: LeaseFreeze} }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquire during the end: %v, want it to wait", err)
	}
	if done, _ := c.ReconcileStale(ctx, "ns"); len(done) != 0 {
		t.Errorf("ReconcileStale ended a lease whose end is under way: %v", done)
	}
	c.Clientset.CoreV1().Pods("ns").Delete(ctx, "p", metav1.DeleteOptions{})
	long := now.Add(-endingWait - time.Second)
	mark(&Lease{Kind: LeaseFreeze, Ending: &long})
	l, err := c.acquire(ctx, p, "s2", func(*Lease) *Lease { return &Lease{Kind: LeaseFreeze} })
	if err != nil || l.Ending != nil || len(l.Holders) != 1 {
		t.Errorf("acquire after an end left unfinished: %+v %v", l, err)
	}
}
