package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/doppel-dev/doppel/protocol"
)

// How long Connect retries `unauthorized` on an agent it joined: the
// kubelet writes the new annotation into the agent's token file on its
// next sync of the pod (measured on the local cluster: 0.7–1.1 s).
const joinTimeout = 20 * time.Second

// jobControllerLabel holds the UID of a pod's Job. The Job's name is not
// enough: a shared agent's Job name is reused by the next agent of the
// same target pod while the previous pod may still be terminating.
const jobControllerLabel = "batch.kubernetes.io/controller-uid"

// jobPods returns the pods of job.
// jobPodSelector selects a Job's pods the way its API server labels them:
// the selector it filled in (controller-uid before Kubernetes 1.27), else
// the current label.
func jobPodSelector(job *batchv1.Job) string {
	if job.Spec.Selector != nil {
		if sel, err := metav1.LabelSelectorAsSelector(job.Spec.Selector); err == nil && !sel.Empty() {
			return sel.String()
		}
	}
	return labels.Set{jobControllerLabel: string(job.UID)}.String()
}

func (c *Client) jobPods(ctx context.Context, job *batchv1.Job) ([]corev1.Pod, error) {
	pods, err := c.Clientset.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: jobPodSelector(job)})
	if err != nil {
		return nil, explain(err, "list", "pods", job.Namespace)
	}
	return pods.Items, nil
}

// findAgent returns a running agent pod of the target pod that a session
// may join: not being deleted, its agent container running, the same
// image, and reading a token file. The oldest wins, so sessions joining
// at once pick the same one. nil when there is none.
func (c *Client) findAgent(ctx context.Context, ns, targetUID, image, avoid string) (*corev1.Pod, error) {
	pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{LabelName: AgentName, LabelTargetPod: targetUID}.String(),
	})
	if err != nil {
		return nil, explain(err, "list", "pods", ns)
	}
	var best *corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if string(p.UID) == avoid || podEnding(p) || !agentRunning(p) || !joinable(&p.Spec, image) {
			continue
		}
		if best == nil || p.CreationTimestamp.Before(&best.CreationTimestamp) ||
			(p.CreationTimestamp.Equal(&best.CreationTimestamp) && p.Name < best.Name) {
			best = p
		}
	}
	return best, nil
}

// joinable reports whether an agent pod (spec) can take another session:
// the same image (hence protocol) and a token file to learn its hash from.
func joinable(spec *corev1.PodSpec, image string) bool {
	for _, ctr := range spec.Containers {
		if ctr.Name == AgentContainer {
			return ctr.Image == image && slices.Contains(ctr.Args, "--token-file")
		}
	}
	return false
}

// agentRunning reports whether the agent container of pod runs.
func agentRunning(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == AgentContainer {
			return st.State.Running != nil
		}
	}
	return false
}

// podEnding reports whether an agent pod is on its way out: deleted,
// finished, or its agent exited.
func podEnding(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return true
	}
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == AgentContainer && st.State.Terminated != nil {
			return true
		}
	}
	return false
}

// jobEnding reports whether an agent Job is done or ending: deleted,
// finished, or with only ending pods (or the pod to avoid). A Job without
// pods is starting, not ending.
func jobEnding(job *batchv1.Job, pods []corev1.Pod, avoid string) bool {
	if job.DeletionTimestamp != nil {
		return true
	}
	for _, cond := range job.Status.Conditions {
		if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
			return true
		}
	}
	if len(pods) == 0 {
		return false
	}
	for i := range pods {
		if string(pods[i].UID) != avoid && !podEnding(&pods[i]) {
			return false
		}
	}
	return true
}

// jobStuck: the Job's agent never ran although its start is long over
// (the session starting it gave up or was killed while its image could
// not be pulled, say). The agent's own timeouts can't end it; a session
// that finds it replaces it.
func jobStuck(job *batchv1.Job, pods []corev1.Pod, now time.Time) bool {
	limit := 10 * time.Minute
	if ctrs := job.Spec.Template.Spec.Containers; len(ctrs) > 0 {
		args := ctrs[0].Args
		for i := 0; i+1 < len(args); i++ {
			if d, err := time.ParseDuration(args[i+1]); args[i] == "--startup-timeout" && err == nil {
				limit = d + time.Minute
			}
		}
	}
	if now.Sub(job.CreationTimestamp.Time) < limit {
		return false
	}
	for i := range pods {
		for _, cs := range pods[i].Status.ContainerStatuses {
			if cs.State.Running != nil || cs.State.Terminated != nil {
				return false
			}
		}
	}
	return true
}

// removeJob deletes an ended agent Job (only that one: a precondition on
// its UID) and waits until it is gone, so that its name can be used again.
// Without the right to delete Jobs it waits for the Job's TTL instead.
func (c *Client) removeJob(ctx context.Context, job *batchv1.Job) error {
	jobs := c.Clientset.BatchV1().Jobs(job.Namespace)
	err := jobs.Delete(ctx, job.Name, metav1.DeleteOptions{
		Preconditions:     &metav1.Preconditions{UID: &job.UID},
		PropagationPolicy: ptrTo(metav1.DeletePropagationBackground),
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && !apierrors.IsForbidden(err) {
		return explain(err, "delete", "jobs.batch", job.Namespace)
	}
	for {
		j, err := jobs.Get(ctx, job.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err == nil && j.UID != job.UID:
			return nil // replaced already: the caller looks again
		case err != nil && ctx.Err() == nil:
			return explain(err, "get", "jobs.batch", job.Namespace)
		}
		select {
		case <-ctx.Done():
			return errorf(ReasonTimeout, ctx.Err(), "the previous agent job %s/%s of the target pod did not go away; `kubectl delete job %s -n %s` removes it",
				job.Namespace, job.Name, job.Name, job.Namespace)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// errAgentGone: the agent pod to join went away before the join.
var errAgentGone = errors.New("the agent pod went away")

// joinAgent adds the session's token hash to a running agent pod's
// annotations; the agent accepts it once the kubelet has refreshed the
// agent's token file (Connect retries meanwhile).
func (c *Client) joinAgent(ctx context.Context, a *Agent, pod *corev1.Pod, step func(string)) (*Agent, error) {
	step("joining the running agent " + pod.Name)
	h := a.opts.TokenHash
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		// The UID makes the patch fail on a different pod of the same name.
		"uid":         pod.UID,
		"annotations": map[string]string{h.Annotation(): h.String()},
	}})
	if err != nil {
		return nil, err
	}
	if _, err := c.Clientset.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) || apierrors.IsInvalid(err) {
			return nil, fmt.Errorf("%w: %v", errAgentGone, err)
		}
		err = explain(err, "patch", "pods", pod.Namespace)
		var e *Error
		if errors.As(err, &e) && e.Reason == ReasonForbidden {
			e.Message = fmt.Sprintf("an agent already serves the target pod (%s), and joining it adds an annotation to its pod: %s", pod.Name, e.Message)
		}
		return nil, err
	}
	a.Pod, a.PodUID, a.Node, a.Joined = pod.Name, string(pod.UID), pod.Spec.NodeName, true
	a.Job = pod.Labels["job-name"]
	for _, ref := range pod.OwnerReferences {
		if ref.Kind == "Job" {
			a.Job = ref.Name
		}
	}
	step("agent running")
	return a, nil
}

// Connect dials the agent and says hello, retrying while the agent has
// not started listening yet (the container runs a few milliseconds before
// its listener does), and, on an agent this session joined, while the
// agent does not know the session's token yet. If the joined agent turns
// out to be exiting (its idle window ended just as this session joined),
// Connect starts a new agent, which then replaces a's fields. The first
// Connect of a session whose hello StartAgent had (AgentOptions.Hello)
// returns the connection StartAgent made.
func (a *Agent) Connect(ctx context.Context, hello protocol.Hello) (*protocol.Client, error) {
	listening := time.Now().Add(15 * time.Second)
	joining := time.Now().Add(joinTimeout)
	restarted := false
	for {
		if cl := a.early; cl != nil {
			// StartAgent greeted the agent with this session's hello.
			a.early = nil
			if h := a.opts.Hello; !hello.Resume && h != nil && h.SessionID == hello.SessionID && h.Token == hello.Token {
				return cl, nil
			}
			cl.Close()
		}
		cl, err := a.hello(ctx, hello)
		if err == nil {
			return cl, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		retry := false
		switch {
		case a.Joined && !hello.Resume && !restarted && a.ending(ctx, err):
			old := a.Pod
			a.step("the agent " + old + " is exiting: starting a new one")
			fresh, serr := a.client.startAgent(ctx, a.opts, a.step, a.PodUID)
			if serr != nil {
				return nil, fmt.Errorf("the agent %s/%s exited as this session joined it, and starting another failed: %w", a.Namespace, old, serr)
			}
			*a = *fresh
			restarted = true
			listening, joining = time.Now().Add(15*time.Second), time.Now().Add(joinTimeout)
			continue
		case a.Joined && errors.Is(err, protocol.ErrUnauthorized):
			// The kubelet has not written this session's hash into the
			// agent's token file yet.
			retry = time.Now().Before(joining)
		case errors.Is(err, protocol.ErrConnectionLost):
			retry = time.Now().Before(listening)
		}
		if !retry {
			return nil, fmt.Errorf("agent %s/%s: %w", a.Namespace, a.Pod, err)
		}
		// The agent listens milliseconds after its container runs; a joiner
		// waits for the kubelet's refresh of the token file.
		wait := 50 * time.Millisecond
		if a.Joined {
			wait = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// hello dials the agent and says hello once.
func (a *Agent) hello(ctx context.Context, hello protocol.Hello) (*protocol.Client, error) {
	return a.helloThrough(ctx, hello, a.Dial)
}

// helloThrough is hello over a connection from dial.
func (a *Agent) helloThrough(ctx context.Context, hello protocol.Hello, dial func(context.Context) (net.Conn, error)) (*protocol.Client, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	c, err := protocol.Dial(ctx, conn, hello)
	if err != nil {
		return nil, err
	}
	// Downloads move to port-forwards of their own (SPEC.md §7, "Bulk").
	c.SetBulk(a.Dial, 0)
	return c, nil
}

// ending reports whether the agent is exiting, after a hello failed with
// err: it said so, or its pod is gone or finished.
func (a *Agent) ending(ctx context.Context, err error) bool {
	if errors.Is(err, protocol.ErrShuttingDown) {
		return true
	}
	if errors.Is(err, protocol.ErrUnauthorized) || errors.Is(err, protocol.ErrVersionMismatch) ||
		errors.Is(err, protocol.ErrSessionInUse) || errors.Is(err, protocol.ErrUnknownSession) {
		return false // the agent answered: it is alive
	}
	pod, gerr := a.client.Clientset.CoreV1().Pods(a.Namespace).Get(ctx, a.Pod, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(gerr):
		return true
	case gerr != nil:
		return false
	}
	if a.Container != "" {
		return string(pod.UID) != a.PodUID || ephemeralEnding(pod, a.Container)
	}
	return string(pod.UID) != a.PodUID || podEnding(pod)
}

// State says, for people, what became of the agent: after its session
// broke, the user wants to know whether it was killed, deleted or is
// still there.
func (a *Agent) State(ctx context.Context) string {
	what := "the agent pod " + a.Namespace + "/" + a.Pod
	if a.Container != "" {
		what = "the agent container " + a.Container + " in pod " + a.Namespace + "/" + a.Pod
	}
	pod, err := a.client.Clientset.CoreV1().Pods(a.Namespace).Get(ctx, a.Pod, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) || (err == nil && string(pod.UID) != a.PodUID):
		return what + " is gone (deleted)"
	case err != nil:
		return what + ": its state is unknown (" + err.Error() + ")"
	case pod.DeletionTimestamp != nil:
		return what + " is being deleted"
	}
	statuses := pod.Status.ContainerStatuses
	name := AgentContainer
	if a.Container != "" {
		statuses, name = pod.Status.EphemeralContainerStatuses, a.Container
	}
	for _, st := range statuses {
		if st.Name != name {
			continue
		}
		if t := st.State.Terminated; t != nil {
			return fmt.Sprintf("%s exited (%s, code %d%s)", what, t.Reason, t.ExitCode, signalOf(t.ExitCode))
		}
		if st.State.Running != nil {
			return what + " still runs: the port-forward to it fails (`kubectl logs` of it may say why)"
		}
	}
	return what + " is not running (phase " + string(pod.Status.Phase) + ")"
}

func signalOf(code int32) string {
	switch code {
	case 137:
		return ": killed by SIGKILL"
	case 143:
		return ": ended by SIGTERM"
	}
	return ""
}
