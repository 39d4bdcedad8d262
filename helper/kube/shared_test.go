package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/protocol"
)

// fakeCluster is a fake API server whose job controller creates a running
// agent pod for every agent Job at once.
type fakeCluster struct {
	cs   *fake.Clientset
	n    int
	jobs []string // names of the Jobs created, in order
	// agentState, when set, is the agent container's state in the pods
	// the job controller creates (else running).
	agentState *corev1.ContainerState
}

func newFakeCluster(t *testing.T) *fakeCluster {
	f := &fakeCluster{cs: fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}})}
	f.cs.PrependReactor("create", "jobs", func(action k8stesting.Action) (bool, runtime.Object, error) {
		job := action.(k8stesting.CreateAction).GetObject().(*batchv1.Job)
		if _, err := f.cs.Tracker().Get(batchv1.SchemeGroupVersion.WithResource("jobs"), job.Namespace, job.Name); job.Name != "" && err == nil {
			return false, nil, nil // the tracker answers AlreadyExists
		}
		f.n++
		if job.Name == "" {
			job.Name = fmt.Sprintf("%sgen%d", job.GenerateName, f.n)
		}
		job.UID = types.UID(fmt.Sprintf("job-uid-%d", f.n))
		f.jobs = append(f.jobs, job.Name)
		state := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
		if f.agentState != nil {
			state = *f.agentState
		}
		f.addPod(t, job, fmt.Sprintf("%s-pod%d", job.Name, f.n), state)
		return false, nil, nil
	})
	return f
}

func (f *fakeCluster) addPod(t *testing.T, job *batchv1.Job, name string, state corev1.ContainerState) *corev1.Pod {
	t.Helper()
	tmpl := job.Spec.Template
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: job.Namespace, UID: types.UID("uid-" + name),
			Labels: map[string]string{jobControllerLabel: string(job.UID), "job-name": job.Name}, Annotations: map[string]string{},
			OwnerReferences:   []metav1.OwnerReference{{Kind: "Job", Name: job.Name, UID: job.UID}},
			CreationTimestamp: metav1.NewTime(time.Unix(int64(1000+f.n), 0))},
		Spec: *tmpl.Spec.DeepCopy(),
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: AgentContainer, State: state}}},
	}
	pod.Spec.NodeName = "node-1"
	for k, v := range tmpl.Labels {
		pod.Labels[k] = v
	}
	for k, v := range tmpl.Annotations {
		pod.Annotations[k] = v
	}
	if state.Terminated != nil {
		pod.Status.Phase = corev1.PodSucceeded
	}
	if err := f.cs.Tracker().Add(pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

func (f *fakeCluster) client() *Client { return &Client{Clientset: f.cs, Namespace: "ns"} }

func sharedOpts(token string) AgentOptions {
	cfg := config.Default().Agent
	cfg.Image = "doppel-agent:test"
	return AgentOptions{Target: &Target{Namespace: "ns", Pod: "backend", PodUID: "target-uid", Node: "node-1",
		Container: "app", ContainerID: "containerd://abc"}, Config: cfg, TokenHash: protocol.HashToken(token)}
}

func TestStartAgentShares(t *testing.T) {
	f := newFakeCluster(t)
	c := f.client()
	ctx := context.Background()

	a1, err := c.StartAgent(ctx, sharedOpts("one"))
	if err != nil {
		t.Fatal(err)
	}
	if a1.Joined || a1.Job != AgentJobName("target-uid") || a1.Pod == "" || a1.Node != "node-1" {
		t.Fatalf("first agent %+v", a1)
	}
	// The second session joins: its hash lands on the agent pod.
	var steps []string
	opts := sharedOpts("two")
	opts.Progress = func(p Progress) { steps = append(steps, p.Step) }
	a2, err := c.StartAgent(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !a2.Joined || a2.Pod != a1.Pod || a2.Job != a1.Job || a2.PodUID != a1.PodUID || len(f.jobs) != 1 {
		t.Fatalf("second agent %+v, jobs %v", a2, f.jobs)
	}
	pod, err := f.cs.CoreV1().Pods("ns").Get(ctx, a1.Pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := protocol.HashToken("two")
	if pod.Annotations[h.Annotation()] != h.String() || pod.Annotations[AnnotationPort] == "" {
		t.Errorf("annotations after the join: %v", pod.Annotations)
	}
	if !strings.Contains(strings.Join(steps, ","), "joining the running agent "+a1.Pod) {
		t.Errorf("steps %q", steps)
	}

	// An agent that is exiting is not joined: the next session replaces
	// its Job.
	a3, err := c.startAgent(ctx, sharedOpts("three"), func(string) {}, a1.PodUID)
	if err != nil {
		t.Fatal(err)
	}
	if a3.Joined || a3.Pod == a1.Pod || len(f.jobs) != 2 || f.jobs[1] != AgentJobName("target-uid") {
		t.Fatalf("after an exiting agent: %+v, jobs %v", a3, f.jobs)
	}
}

func TestStartAgentRace(t *testing.T) {
	// Another session created the Job a moment ago: StartAgent does not
	// see its pod when it looks, gets AlreadyExists, and joins.
	f := newFakeCluster(t)
	ctx := context.Background()
	job, err := AgentJob(sharedOpts("winner"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.BatchV1().Jobs("ns").Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.cs.PrependReactor("list", "pods", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if strings.Contains(action.(k8stesting.ListAction).GetListRestrictions().Labels.String(), LabelTargetPod) {
			return true, &corev1.PodList{}, nil // not there yet for findAgent
		}
		return false, nil, nil
	})
	a, err := f.client().StartAgent(ctx, sharedOpts("loser"))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Joined || a.Job != job.Name || len(f.jobs) != 1 {
		t.Fatalf("agent %+v, jobs %v", a, f.jobs)
	}
}

func TestStartAgentOtherVersion(t *testing.T) {
	// The target's agent runs another image: this session gets its own.
	f := newFakeCluster(t)
	ctx := context.Background()
	old := sharedOpts("old")
	old.Config.Image = "doppel-agent:old"
	a1, err := f.client().StartAgent(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := f.client().StartAgent(ctx, sharedOpts("new"))
	if err != nil {
		t.Fatal(err)
	}
	if a2.Joined || a2.Pod == a1.Pod || !strings.HasPrefix(a2.Job, "doppel-agent-gen") {
		t.Fatalf("agent %+v beside %+v", a2, a1)
	}
	// Nor is a separate agent joined later (it has no token file): while
	// the old version holds the shared name, each new session gets its own.
	a3, err := f.client().StartAgent(ctx, sharedOpts("newer"))
	if err != nil {
		t.Fatal(err)
	}
	if a3.Joined || a3.Pod == a2.Pod {
		t.Fatalf("joined an exclusive agent: %+v", a3)
	}
}

func TestAgentPodStates(t *testing.T) {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}
	pod := func(phase corev1.PodPhase, st corev1.ContainerState, deleting bool) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "p"}, Status: corev1.PodStatus{Phase: phase,
			ContainerStatuses: []corev1.ContainerStatus{{Name: AgentContainer, State: st}}}}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		}
		return p
	}
	live := pod(corev1.PodRunning, running, false)
	if podEnding(&live) || !agentRunning(&live) {
		t.Error("running pod")
	}
	for _, p := range []corev1.Pod{pod(corev1.PodRunning, done, false), pod(corev1.PodSucceeded, done, false), pod(corev1.PodRunning, running, true)} {
		if !podEnding(&p) {
			t.Errorf("not ending: %+v", p.Status)
		}
	}
	job := &batchv1.Job{}
	if jobEnding(job, nil, "") {
		t.Error("a Job without pods is starting, not ending")
	}
	if jobEnding(job, []corev1.Pod{live}, "") || !jobEnding(job, []corev1.Pod{live}, "p") {
		t.Error("avoid")
	}
	job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	if !jobEnding(job, []corev1.Pod{live}, "") {
		t.Error("a complete Job")
	}
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: AgentContainer, Image: "i", Args: []string{"serve", "--token-file", TokenFile}}}}
	if !joinable(&spec, "i") || joinable(&spec, "j") {
		t.Error("joinable by image")
	}
	spec.Containers[0].Args = []string{"serve"}
	if joinable(&spec, "i") {
		t.Error("joinable without a token file")
	}
}

// A Job's pods are found by the selector its API server filled in: before
// Kubernetes 1.27 that is controller-uid, not batch.kubernetes.io/….
func TestJobPodSelector(t *testing.T) {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j", UID: "u1"},
		Spec: batchv1.JobSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"controller-uid": "u1"}}}}
	old := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j-x", Labels: map[string]string{"controller-uid": "u1"}}}
	c := &Client{Clientset: fake.NewClientset(old)}
	pods, err := c.jobPods(context.Background(), job)
	if err != nil || len(pods) != 1 {
		t.Errorf("pods of a Job labelled the old way: %d %v", len(pods), err)
	}
	job.Spec.Selector = nil
	if sel := jobPodSelector(job); sel != jobControllerLabel+"=u1" {
		t.Errorf("without a selector: %q", sel)
	}
}

// An agent Job whose pod never ran, long after its start gave up, is
// replaced by the next session rather than waited for.
func TestJobStuck(t *testing.T) {
	now := time.Unix(1e9, 0)
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(now.Add(-3 * time.Minute))},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Args: []string{"serve", "--startup-timeout", "1m0s"}}}}}}}
	pending := corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
		{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}}}
	running := corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
		{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}
	if !jobStuck(job, []corev1.Pod{pending}, now) || !jobStuck(job, nil, now) {
		t.Error("3 min after a 1 min start, a pod that never ran is not taken for stuck")
	}
	if jobStuck(job, []corev1.Pod{running}, now) {
		t.Error("a running agent taken for stuck")
	}
	if jobStuck(job, []corev1.Pod{pending}, now.Add(-2*time.Minute)) {
		t.Error("a start still within its timeout taken for stuck")
	}
}
