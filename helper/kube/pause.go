package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/doppel-dev/doppel/helper/config"
)

// Labels of copy pods.
const (
	// LabelCopyOf is on every copy pod: "KIND.NAME" of its workload (or
	// "pod.NAME" of the pod it copies).
	LabelCopyOf = "doppel.dev/copy-of"
	// AnnotationCopyOf is the same, as "KIND/NAME", for people.
	AnnotationCopyOf = "doppel.dev/copy-of"
)

// Hold is a session's hold on the leases of its pause: it is renewed
// until Release, which undoes what the session's end should undo (only
// the last holder of each lease does).
type Hold struct {
	Session string

	mu     sync.Mutex
	refs   []ObjectRef // SetRefs changes them while the renewals run
	client *Client
	stop   chan struct{}
	done   chan struct{}
}

// Acquire takes (or renews) session's hold on the lease of r, creating it
// with init when the object has none or only a stale one (init gets the
// stale lease, nil if none, and returns the lease to start from).
func (c *Client) acquire(ctx context.Context, r ObjectRef, session string, init func(stale *Lease) *Lease) (*Lease, error) {
	for {
		l, err := c.UpdateLease(ctx, r, func(l *Lease) (*Lease, error) {
			now := time.Now()
			if l != nil && l.ending(now) {
				return nil, errLeaseEnding
			}
			if l == nil || !l.Live(now) {
				l = init(l)
			}
			l.Ending = nil
			l.Prune(now)
			l.Hold(session, now, LeaseDuration)
			return l, nil
		})
		if !errors.Is(err, errLeaseEnding) {
			return l, err
		}
		// Its last holder is restoring the workload: take the lease after.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var errLeaseEnding = errors.New("the lease's end is under way")

// KeepRenewed renews the holds every LeaseRenew until Release.
func (c *Client) KeepRenewed(session string, refs []ObjectRef, onErr func(error)) *Hold {
	h := &Hold{Session: session, refs: refs, client: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(LeaseRenew)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), LeaseRenew)
			if err := c.renewHolds(ctx, session, h.Refs()); err != nil && onErr != nil {
				onErr(err)
			}
			cancel()
		}
	}()
	return h
}

// Refs are the objects held.
func (h *Hold) Refs() []ObjectRef {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refs
}

// SetRefs changes the objects held (a freeze lease joins a copy's).
func (h *Hold) SetRefs(refs []ObjectRef) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refs = refs
}

// renewHolds renews session's hold on each lease of refs.
func (c *Client) renewHolds(ctx context.Context, session string, refs []ObjectRef) error {
	var errs []error
	for _, r := range refs {
		_, err := c.UpdateLease(ctx, r, func(l *Lease) (*Lease, error) {
			if l == nil {
				return nil, fmt.Errorf("the lease on %s is gone (removed by `doppel cleanup`?)", r)
			}
			l.Hold(session, time.Now(), LeaseDuration)
			return l, nil
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Release stops renewing and lets go of every lease, undoing what the
// last holder of each undoes: the replicas come back, copy pods go.
func (h *Hold) Release(ctx context.Context) error {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
	return h.client.ReleaseHolds(ctx, h.Session, h.Refs())
}

// ReleaseHolds lets session go of the leases of refs, in reverse order
// (the workload is restored before its copy goes).
func (c *Client) ReleaseHolds(ctx context.Context, session string, refs []ObjectRef) error {
	var errs []error
	for i := len(refs) - 1; i >= 0; i-- {
		if _, err := c.release(ctx, refs[i], session, false); err != nil && !errors.Is(err, errNoObject) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// release drops session from r's lease; when no live hold is left (or
// stale is true and none is live) it ends the lease: Ended reports that.
// A stale freeze lease (staleOnly) is ended with a thaw Job; a session's
// own is not: its agent thawed when the session unfroze or ended.
func (c *Client) release(ctx context.Context, r ObjectRef, session string, staleOnly bool) (ended bool, err error) {
	var last *Lease
	_, err = c.UpdateLease(ctx, r, func(l *Lease) (*Lease, error) {
		last = nil
		if l == nil {
			return nil, nil
		}
		now := time.Now()
		delete(l.Holders, session)
		if l.Live(now) {
			if staleOnly {
				return l, nil
			}
			l.Prune(now)
			return l, nil
		}
		if l.ending(now) {
			return l, nil // someone else is ending it
		}
		// Kept, marked, until the end action is done: a session taking it
		// meanwhile would see its scale-down undone by the restore.
		l.Ending = &now
		last = l
		return l, nil
	})
	if err != nil || last == nil {
		return false, err
	}
	if err := c.endLease(ctx, r, last, staleOnly); err != nil {
		// Not ended: the next doppel run or cleanup may try at once.
		c.UpdateLease(context.WithoutCancel(ctx), r, func(l *Lease) (*Lease, error) {
			if l != nil {
				l.Ending = nil
			}
			return l, nil
		})
		return false, err
	}
	// Remove the annotation unless someone took the lease meanwhile.
	_, err = c.UpdateLease(ctx, r, func(l *Lease) (*Lease, error) {
		if l != nil && l.Live(time.Now()) {
			return l, nil
		}
		return nil, nil
	})
	if errors.Is(err, errNoObject) {
		err = nil
	}
	return true, err
}

// endLease undoes what the lease stands for.
func (c *Client) endLease(ctx context.Context, r ObjectRef, l *Lease, stale bool) error {
	switch l.Kind {
	case LeaseScaleDown:
		if l.Replicas != nil {
			if err := c.scale(ctx, r, *l.Replicas); err != nil {
				return err
			}
		}
		if l.Copy != "" {
			return c.deletePod(ctx, r.Namespace, l.Copy)
		}
	case LeaseCopy:
		if r.Kind == "pod" {
			return c.deletePod(ctx, r.Namespace, r.Name)
		}
	case LeaseFreeze:
		if !stale {
			return nil
		}
		// The agent thaws when its last freezing session ends, and its
		// guardian when it dies: a stale freeze lease means neither had
		// the chance (a node's agent killed with its guardian). Thaw with
		// a one-shot agent.
		return c.thaw(ctx, r, l)
	}
	return nil
}

func (c *Client) deletePod(ctx context.Context, ns, name string) error {
	err := c.Clientset.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(1))})
	if err != nil && !apierrors.IsNotFound(err) {
		return explain(err, "delete", "pods", ns)
	}
	return nil
}

// scale sets the workload's replicas through its scale subresource.
func (c *Client) scale(ctx context.Context, r ObjectRef, replicas int32) error {
	apps := c.Clientset.AppsV1()
	for attempt := 0; ; attempt++ {
		var err error
		switch r.Kind {
		case "deployment":
			var s *autoscalingv1.Scale
			if s, err = apps.Deployments(r.Namespace).GetScale(ctx, r.Name, metav1.GetOptions{}); err == nil {
				s.Spec.Replicas = replicas
				_, err = apps.Deployments(r.Namespace).UpdateScale(ctx, r.Name, s, metav1.UpdateOptions{})
			}
		case "statefulset":
			var s *autoscalingv1.Scale
			if s, err = apps.StatefulSets(r.Namespace).GetScale(ctx, r.Name, metav1.GetOptions{}); err == nil {
				s.Spec.Replicas = replicas
				_, err = apps.StatefulSets(r.Namespace).UpdateScale(ctx, r.Name, s, metav1.UpdateOptions{})
			}
		default:
			return fmt.Errorf("kube: cannot scale a %s", r.Kind)
		}
		switch {
		case err == nil:
			return nil
		case apierrors.IsConflict(err) && attempt < 10:
			continue
		case apierrors.IsNotFound(err):
			return errNoObject
		default:
			return explain(err, "update", r.Kind+"s/scale", r.Namespace)
		}
	}
}

// ReconcileStale ends the leases in the namespace (all with "") whose
// holds all expired: a crashed session's frozen pod is thawed, its
// workload scaled back, its copy pod deleted. Any doppel run calls it for
// its target's namespace, `doppel cleanup` for the namespaces it cleans.
func (c *Client) ReconcileStale(ctx context.Context, ns string) ([]Removed, error) {
	var done []Removed
	var errs []error
	check := func(r ObjectRef, ann map[string]string, what string) {
		l, err := ParseLease(ann[AnnotationLease])
		if err != nil || l == nil || l.Live(time.Now()) || l.ending(time.Now()) {
			return
		}
		ended, err := c.release(ctx, r, "", true)
		if err != nil {
			errs = append(errs, fmt.Errorf("ending the stale %s lease of %s: %w", l.Kind, r, err))
			return
		}
		if ended {
			done = append(done, Removed{Kind: "lease", Namespace: r.Namespace, Name: r.Kind + "/" + r.Name, Target: "stale " + l.Kind + ": " + what})
		}
	}
	deps, err := c.Clientset.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, d := range deps.Items {
			check(ObjectRef{"deployment", d.Namespace, d.Name}, d.Annotations, "restored")
		}
	}
	sts, err := c.Clientset.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, s := range sts.Items {
			check(ObjectRef{"statefulset", s.Namespace, s.Name}, s.Annotations, "restored")
		}
	}
	pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return done, explain(err, "list", "pods", ns)
	}
	for _, p := range pods.Items {
		if p.Annotations[AnnotationLease] != "" && p.DeletionTimestamp == nil {
			what := "thawed"
			if p.Labels[LabelCopyOf] != "" {
				what = "copy deleted"
			}
			check(ObjectRef{"pod", p.Namespace, p.Name}, p.Annotations, what)
		}
	}
	return done, errors.Join(errs...)
}

// FreezeLease takes session's hold on the freeze lease of the target pod.
func (c *Client) FreezeLease(ctx context.Context, t *Target, session string) (ObjectRef, error) {
	r := ObjectRef{"pod", t.Namespace, t.Pod}
	_, err := c.acquire(ctx, r, session, func(*Lease) *Lease {
		return &Lease{Kind: LeaseFreeze, ContainerID: t.ContainerID, Node: t.Node}
	})
	return r, err
}

// CopyOptions describe a session against a copy of the target.
type CopyOptions struct {
	Path      config.TargetPath
	Namespace string
	Session   string
	User      string
	ScaleDown bool
	Labels    map[string]string
	Progress  func(string)
	// Agent is the agent config: its image (and pull policy) holds the
	// copy's target container (docs/pause.md).
	Agent config.AgentConfig
}

// StartCopy makes the session run against a copy pod of the target: it
// joins the copy other sessions use (a live lease on the workload, or on
// the copy pod) or creates one from the workload's pod template (from the
// target pod for other kinds), scales the workload to zero with
// ScaleDown, and waits for the copy to run. It returns the copy as the
// target and the objects whose leases the session holds.
func (c *Client) StartCopy(ctx context.Context, o CopyOptions) (*Target, []ObjectRef, error) {
	ns := c.namespace(o.Namespace)
	step := func(s string) {
		if o.Progress != nil {
			o.Progress(s)
		}
	}
	kind := string(o.Path.Kind)
	var template *corev1.PodTemplateSpec
	var selector *metav1.LabelSelector
	var replicas int32 = 1
	switch o.Path.Kind {
	case config.TargetDeployment:
		d, err := c.Clientset.AppsV1().Deployments(ns).Get(ctx, o.Path.Name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, c.notFound(ctx, err, o.Path, ns)
		}
		template, selector = d.Spec.Template.DeepCopy(), d.Spec.Selector
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
	case config.TargetStatefulSet:
		s, err := c.Clientset.AppsV1().StatefulSets(ns).Get(ctx, o.Path.Name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, c.notFound(ctx, err, o.Path, ns)
		}
		template, selector = s.Spec.Template.DeepCopy(), s.Spec.Selector
		if s.Spec.Replicas != nil {
			replicas = *s.Spec.Replicas
		}
		c.statefulSetVolumes(ctx, s, &template.Spec)
	default:
		if o.ScaleDown {
			return nil, nil, errorf(ReasonUnsupported, nil, "feature.copy_target.scale_down needs a deployment or statefulset target, not %s", o.Path.Kind)
		}
		pod, err := c.resolvePod(ctx, o.Path, ns)
		if err != nil {
			return nil, nil, err
		}
		template = &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: pod.Labels, Annotations: pod.Annotations}, Spec: *pod.Spec.DeepCopy()}
		kind, o.Path.Name = "pod", pod.Name
	}
	if selector != nil {
		if sel, err := metav1.LabelSelectorAsSelector(selector); err == nil && len(o.Labels) > 0 && sel.Matches(labels.Set(o.Labels)) {
			return nil, nil, errorf(ReasonUnsupported, nil, "feature.copy_target.labels %v match the selector of %s: it would adopt the copy pod (and delete it while scaled down)", o.Labels, o.Path)
		}
	}
	copyOf := kind + "." + o.Path.Name
	var refs []ObjectRef
	fail := func(err error) (*Target, []ObjectRef, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := c.ReleaseHolds(rctx, o.Session, refs); rerr != nil {
			err = fmt.Errorf("%w (and undoing: %v)", err, rerr)
		}
		return nil, nil, err
	}

	// The copy: the one a live lease names, else a new one.
	copyName := ""
	if o.ScaleDown {
		wl := ObjectRef{kind, ns, o.Path.Name}
		step(fmt.Sprintf("taking the scale-down lease of %s/%s", kind, o.Path.Name))
		l, err := c.acquire(ctx, wl, o.Session, func(stale *Lease) *Lease {
			n := &Lease{Kind: LeaseScaleDown, Replicas: ptrTo(replicas)}
			if stale != nil && stale.Replicas != nil {
				// A crashed session scaled it down: its record is the truth.
				n.Replicas, n.Copy = stale.Replicas, stale.Copy
			}
			return n
		})
		if err != nil {
			return nil, nil, err
		}
		refs = append(refs, wl)
		copyName = l.Copy
	} else {
		// A copy without scale-down: join a live copy of the same source.
		pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{LabelCopyOf: copyOf}.String()})
		if err == nil {
			for _, p := range pods.Items {
				if l, _ := ParseLease(p.Annotations[AnnotationLease]); l != nil && l.Live(time.Now()) && p.DeletionTimestamp == nil {
					copyName = p.Name
				}
			}
		}
	}
	var pod *corev1.Pod
	if copyName != "" {
		p, err := c.Clientset.CoreV1().Pods(ns).Get(ctx, copyName, metav1.GetOptions{})
		if err == nil && p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
			pod = p
			step("joining the copy pod " + copyName)
		}
	}
	if pod == nil {
		p, err := copyPod(template, ns, o.Path, kind, o.User, o.Labels, o.Agent)
		if err != nil {
			return fail(err)
		}
		// Created with the session's lease on it: a helper killed before
		// the lease's own write would leave a copy nothing ever removes.
		l := &Lease{Kind: LeaseCopy}
		l.Hold(o.Session, time.Now(), LeaseDuration)
		v, err := json.Marshal(l)
		if err != nil {
			return fail(err)
		}
		p.Annotations[AnnotationLease] = string(v)
		step("creating the copy pod of " + kind + "/" + o.Path.Name)
		created, err := c.Clientset.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return fail(explain(err, "create", "pods", ns))
		}
		pod = created
		if o.ScaleDown {
			if _, err := c.UpdateLease(ctx, refs[0], func(l *Lease) (*Lease, error) {
				if l == nil {
					return nil, errors.New("the scale-down lease vanished")
				}
				l.Copy = created.Name
				return l, nil
			}); err != nil {
				c.deletePod(context.WithoutCancel(ctx), ns, created.Name)
				return fail(err)
			}
		}
	}
	cp := ObjectRef{"pod", ns, pod.Name}
	if _, err := c.acquire(ctx, cp, o.Session, func(*Lease) *Lease { return &Lease{Kind: LeaseCopy} }); err != nil {
		return fail(err)
	}
	refs = append(refs, cp)
	if o.ScaleDown {
		step(fmt.Sprintf("scaling %s/%s to 0 (from %d)", kind, o.Path.Name, replicas))
		if err := c.scale(ctx, refs[0], 0); err != nil {
			return fail(err)
		}
	}
	step("waiting for the copy pod " + pod.Name)
	timeout := o.Agent.StartupTimeoutDuration()
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	deadline := time.Now().Add(timeout)
	renewed := time.Now()
	for {
		if time.Since(renewed) >= LeaseRenew {
			// A slow copy (an image pull) must not outlive the holds: the
			// session's renewals start only once the copy runs.
			c.renewHolds(ctx, o.Session, refs)
			renewed = time.Now()
		}
		p, err := c.Clientset.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return fail(explain(err, "get", "pods", ns))
		}
		if p.Status.Phase == corev1.PodRunning {
			path := o.Path
			path.Kind, path.Name = config.TargetPod, p.Name
			if t, err := targetOf(path, p); err == nil {
				return t, refs, nil
			}
		}
		if err := copyPodDeadEnd(p); err != nil {
			return fail(err)
		}
		if time.Now().After(deadline) {
			return fail(errorf(ReasonTimeout, nil, "the copy pod %s/%s did not start within %s (phase %s); raise agent.startup_timeout if its image is slow to pull",
				ns, p.Name, timeout, p.Status.Phase))
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// copyPodDeadEnd is why a copy pod will never run, nil while it may: it
// failed or is being deleted, can't be scheduled, or one of its containers
// (doppel's init container with the agent image, or the workload's own)
// can't be created.
func copyPodDeadEnd(p *corev1.Pod) error {
	if p.Status.Phase == corev1.PodFailed || p.DeletionTimestamp != nil {
		return errorf(ReasonNotReady, nil, "the copy pod %s/%s failed: %s %s", p.Namespace, p.Name, p.Status.Reason, p.Status.Message)
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
			return errorf(ReasonUnschedulable, nil, "the copy pod %s/%s cannot be scheduled: %s", p.Namespace, p.Name, cond.Message)
		}
	}
	for _, st := range p.Status.InitContainerStatuses {
		if w := st.State.Waiting; w != nil {
			if err := waitingError(w, p.Spec.NodeName, st.Image); err != nil {
				return err
			}
		}
		if t := st.State.Terminated; t != nil && t.ExitCode != 0 {
			return errorf(ReasonAgentFailed, nil, "the copy pod %s/%s: init container %s exited (%s, code %d): %s",
				p.Namespace, p.Name, st.Name, t.Reason, t.ExitCode, strings.TrimSpace(t.Message))
		}
	}
	for _, st := range p.Status.ContainerStatuses {
		if w := st.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName":
				return errorf(ReasonImagePull, nil, "node %s cannot get the image %s of the copy pod %s/%s (%s: %s)",
					p.Spec.NodeName, st.Image, p.Namespace, p.Name, w.Reason, w.Message)
			case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
				return errorf(ReasonNotReady, nil, "the copy pod %s/%s: container %s cannot start (%s): %s", p.Namespace, p.Name, st.Name, w.Reason, w.Message)
			}
		}
	}
	return nil
}

// copyPod builds the copy of a pod template: the same spec, its own
// labels (so that neither the workload nor its Services select it), no
// owner.
func copyPod(t *corev1.PodTemplateSpec, ns string, path config.TargetPath, kind, user string, extra map[string]string, agent config.AgentConfig) (*corev1.Pod, error) {
	name := path.Name
	spec := t.Spec.DeepCopy()
	spec.NodeName = ""
	spec.EphemeralContainers = nil
	// The target container keeps its image (files), environment, volumes
	// and ports, but runs `doppel-agent hold` instead of the application,
	// which must not work in the cluster meanwhile: an init container puts
	// the static agent binary on a shared volume.
	ctr, err := chooseContainer(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: t.Annotations}, Spec: *spec}, path.Container)
	if err != nil {
		return nil, err
	}
	image := agent.Image
	if image == "" {
		image = DefaultImage()
	}
	const holdDir = "/doppel-hold"
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "doppel-hold", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	mount := corev1.VolumeMount{Name: "doppel-hold", MountPath: holdDir}
	spec.InitContainers = append(spec.InitContainers, corev1.Container{
		Name: "doppel-install", Image: image, ImagePullPolicy: corev1.PullPolicy(agent.ImagePullPolicy),
		Args: []string{"install-self", holdDir + "/doppel-agent"}, VolumeMounts: []corev1.VolumeMount{mount},
	})
	ctr.Command, ctr.Args = []string{holdDir + "/doppel-agent"}, []string{"hold"}
	ctr.VolumeMounts = append(ctr.VolumeMounts, mount)
	ctr.LivenessProbe, ctr.ReadinessProbe, ctr.StartupProbe = nil, nil, nil
	lbls := map[string]string{
		LabelCopyOf:                    kind + "." + name,
		"app.kubernetes.io/managed-by": "doppel",
	}
	if user != "" {
		lbls[LabelUser] = UserLabel(user)
	}
	maps.Copy(lbls, extra)
	ann := map[string]string{}
	for k, v := range t.Annotations {
		// Keep what configures the pod (mesh injection, default
		// container), not what refers to the workload's rollout.
		if !strings.HasPrefix(k, "deployment.kubernetes.io/") {
			ann[k] = v
		}
	}
	ann[AnnotationCopyOf] = kind + "/" + name
	base := name
	if len(base) > 40 {
		base = base[:40]
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      base + "-doppel-copy-" + rand.String(5),
			Namespace: ns, Labels: lbls, Annotations: ann,
		},
		Spec: *spec,
	}, nil
}

// statefulSetVolumes gives the copy of a StatefulSet's template the
// volumes of its claim templates: ordinal 0's claim when it exists (its pod
// is gone while scaled down), else an empty directory.
func (c *Client) statefulSetVolumes(ctx context.Context, s *appsv1.StatefulSet, spec *corev1.PodSpec) {
	for _, vct := range s.Spec.VolumeClaimTemplates {
		claim := vct.Name + "-" + s.Name + "-0"
		v := corev1.Volume{Name: vct.Name}
		if _, err := c.Clientset.CoreV1().PersistentVolumeClaims(s.Namespace).Get(ctx, claim, metav1.GetOptions{}); err == nil {
			v.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}
		} else {
			v.EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
		spec.Volumes = append(spec.Volumes, v)
	}
}
