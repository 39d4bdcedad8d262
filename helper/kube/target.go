package kube

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/doppel-dev/doppel/helper/config"
)

// Target is a resolved target: the pod and container the local process
// runs "inside".
type Target struct {
	// Path is the target as asked ("deployment/backend").
	Path      config.TargetPath `json:"path"`
	Namespace string            `json:"namespace"`
	// Pod and the rest are empty for a targetless run.
	Pod    string `json:"pod,omitempty"`
	PodUID string `json:"pod_uid,omitempty"`
	Node   string `json:"node,omitempty"`
	PodIP  string `json:"pod_ip,omitempty"`
	// Container is the chosen container's name; ContainerID its runtime ID
	// as the pod status gives it ("containerd://…", "cri-o://…",
	// "docker://…").
	Container   string `json:"container,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	// Ports the container declares, and the ports its probes use (which
	// the kubelet reaches on the pod IP: traffic a session should leave to
	// the pod).
	Ports      []Port  `json:"ports,omitempty"`
	ProbePorts []int32 `json:"probe_ports,omitempty"`
	// Mounts are the container's volume mount paths (ConfigMaps, Secrets,
	// the service-account token): the application's files, read from the
	// pod even where a local system directory (/etc, /var) is the rule.
	Mounts []string `json:"mounts,omitempty"`
	// WorkingDir is the container's working directory, if its spec sets one.
	WorkingDir string `json:"working_dir,omitempty"`
}

// Port is a declared container port.
type Port struct {
	Name     string `json:"name,omitempty"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
}

// Targetless reports whether there is no pod.
func (t *Target) Targetless() bool { return t.Pod == "" }

// String names the target for messages: "staging/backend-5d9c/app".
func (t *Target) String() string {
	if t.Targetless() {
		return "targetless (namespace " + t.Namespace + ")"
	}
	return t.Namespace + "/" + t.Pod + "/" + t.Container
}

// RolloutResource is Argo Rollouts' custom resource.
var RolloutResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// Sidecars are the container names of service meshes and proxies that are
// never the target when a pod has other containers.
var Sidecars = []string{
	"istio-proxy", "istio-init", "linkerd-proxy", "linkerd-init", "envoy", "envoy-sidecar",
	"consul-dataplane", "consul-connect-envoy-sidecar", "kuma-sidecar", "kuma-init", "daprd",
	"cilium-envoy", "aws-appmesh-envoy", "vault-agent", "vault-agent-init", "cloud-sql-proxy",
	"cloudsql-proxy", "oauth2-proxy",
}

func isSidecar(name string) bool { return slices.Contains(Sidecars, name) }

// defaultContainerAnnotation is kubectl's way for a pod to name the
// container commands default to.
const defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// Resolve finds the pod and container path names in namespace (the
// client's when empty): a running, ready pod of the workload, and its
// container (the one asked for, else the only one that is not a mesh
// sidecar).
func (c *Client) Resolve(ctx context.Context, path config.TargetPath, namespace string) (*Target, error) {
	ns := c.namespace(namespace)
	if path.IsZero() {
		return nil, errorf(ReasonNotFound, nil, "no target: pass --target KIND/NAME (see `doppel ls`) or set \"target\" in the config")
	}
	if path.Kind == config.TargetTargetless {
		return &Target{Path: path, Namespace: ns}, nil
	}
	pod, err := c.resolvePod(ctx, path, ns)
	if err != nil {
		return nil, err
	}
	return targetOf(path, pod)
}

// resolvePod returns the pod a path names.
func (c *Client) resolvePod(ctx context.Context, path config.TargetPath, ns string) (*corev1.Pod, error) {
	if path.Kind == config.TargetPod {
		pod, err := c.Clientset.CoreV1().Pods(ns).Get(ctx, path.Name, metav1.GetOptions{})
		if err != nil {
			return nil, c.notFound(ctx, err, path, ns)
		}
		if why := notRunning(pod); why != "" {
			return nil, errorf(ReasonNotReady, nil, "pod %s in namespace %s is not running: %s", pod.Name, ns, why)
		}
		return pod, nil
	}
	selector, rank, err := c.workloadSelector(ctx, path, ns)
	if err != nil {
		return nil, err
	}
	pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return nil, explain(err, "list", "pods", ns)
	}
	pod, err := pickPod(pods.Items, rank)
	if err != nil {
		return nil, errorf(ReasonNotReady, nil, "%s in namespace %s: %v", path, ns, err)
	}
	return pod, nil
}

// podRank orders a workload's pods (higher first: its current revision
// before the old one a rollout is replacing); ok is false for a pod that is
// not the workload's although its labels match (another controller's).
type podRank func(p *corev1.Pod) (rank int, ok bool)

// workloadSelector returns the label selector of a workload's pods and how
// to rank them (nil: all equal).
func (c *Client) workloadSelector(ctx context.Context, path config.TargetPath, ns string) (labels.Selector, podRank, error) {
	var ls *metav1.LabelSelector
	var rank podRank
	switch path.Kind {
	case config.TargetDeployment:
		d, err := c.Clientset.AppsV1().Deployments(ns).Get(ctx, path.Name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, c.notFound(ctx, err, path, ns)
		}
		ls = d.Spec.Selector
		rank = c.deploymentRank(ctx, d)
	case config.TargetStatefulSet:
		s, err := c.Clientset.AppsV1().StatefulSets(ns).Get(ctx, path.Name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, c.notFound(ctx, err, path, ns)
		}
		ls = s.Spec.Selector
		rank = func(p *corev1.Pod) (int, bool) {
			if s.Status.UpdateRevision != "" && p.Labels[appsv1.ControllerRevisionHashLabelKey] == s.Status.UpdateRevision {
				return 1, controlledByOrNone(p, s.UID)
			}
			return 0, controlledByOrNone(p, s.UID)
		}
	case config.TargetReplicaSet:
		r, err := c.Clientset.AppsV1().ReplicaSets(ns).Get(ctx, path.Name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, c.notFound(ctx, err, path, ns)
		}
		ls = r.Spec.Selector
		rank = func(p *corev1.Pod) (int, bool) { return 0, controlledByOrNone(p, r.UID) }
	case config.TargetJob:
		j, err := c.Clientset.BatchV1().Jobs(ns).Get(ctx, path.Name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, c.notFound(ctx, err, path, ns)
		}
		ls = j.Spec.Selector
		rank = func(p *corev1.Pod) (int, bool) { return 0, controlledByOrNone(p, j.UID) }
	case config.TargetCronJob:
		return c.cronJobSelector(ctx, path, ns)
	case config.TargetService:
		s, err := c.Clientset.CoreV1().Services(ns).Get(ctx, path.Name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, c.notFound(ctx, err, path, ns)
		}
		if len(s.Spec.Selector) == 0 {
			return nil, nil, errorf(ReasonUnsupported, nil, "service %s in namespace %s has no selector, so no pods behind it: target one of its pods or their workload instead", path.Name, ns)
		}
		return labels.SelectorFromSet(s.Spec.Selector), nil, nil
	case config.TargetRollout:
		sel, err := c.rolloutSelector(ctx, path, ns)
		return sel, nil, err
	default:
		return nil, nil, errorf(ReasonUnsupported, nil, "unsupported target kind %q", path.Kind)
	}
	if ls == nil {
		return nil, nil, errorf(ReasonUnsupported, nil, "%s in namespace %s has no pod selector", path, ns)
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return sel, rank, nil
}

// deploymentRank ranks a Deployment's pods by the revision of the
// ReplicaSet that owns them: during a rollout the new pods come first, and
// a pod of another workload with matching labels is not the target. When
// its ReplicaSets can't be listed, all pods the selector finds are equal.
func (c *Client) deploymentRank(ctx context.Context, d *appsv1.Deployment) podRank {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil
	}
	sets, err := c.Clientset.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil
	}
	revisions := map[types.UID]int{}
	for _, rs := range sets.Items {
		if ownedBy(rs.OwnerReferences, d.UID) {
			rev, _ := strconv.Atoi(rs.Annotations["deployment.kubernetes.io/revision"])
			revisions[rs.UID] = rev
		}
	}
	if len(revisions) == 0 {
		return nil
	}
	return func(p *corev1.Pod) (int, bool) {
		if ref := metav1.GetControllerOf(p); ref != nil {
			rev, ok := revisions[ref.UID]
			return rev, ok
		}
		return 0, false
	}
}

// controlledByOrNone: the pod's controller is uid, or it has none.
func controlledByOrNone(p *corev1.Pod, uid types.UID) bool {
	ref := metav1.GetControllerOf(p)
	return ref == nil || ref.UID == uid
}

// cronJobSelector targets the pods of the CronJob's most recent Job.
func (c *Client) cronJobSelector(ctx context.Context, path config.TargetPath, ns string) (labels.Selector, podRank, error) {
	cj, err := c.Clientset.BatchV1().CronJobs(ns).Get(ctx, path.Name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, c.notFound(ctx, err, path, ns)
	}
	jobs, err := c.Clientset.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, explain(err, "list", "jobs.batch", ns)
	}
	var latest *batchv1.Job
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if !ownedBy(j.OwnerReferences, cj.UID) {
			continue
		}
		if latest == nil || j.CreationTimestamp.After(latest.CreationTimestamp.Time) ||
			(j.CreationTimestamp.Equal(&latest.CreationTimestamp) && j.Name > latest.Name) {
			latest = j
		}
	}
	if latest == nil {
		return nil, nil, errorf(ReasonNotReady, nil, "cronjob %s in namespace %s has no job yet (schedule %q): wait for its next run or start one with `kubectl create job --from=cronjob/%s NAME`",
			cj.Name, ns, cj.Spec.Schedule, cj.Name)
	}
	sel, err := metav1.LabelSelectorAsSelector(latest.Spec.Selector)
	if err != nil {
		return nil, nil, err
	}
	return sel, func(p *corev1.Pod) (int, bool) { return 0, ownedBy(p.OwnerReferences, latest.UID) }, nil
}

// rolloutSelector reads an Argo Rollout's selector, or that of the
// Deployment its workloadRef names.
func (c *Client) rolloutSelector(ctx context.Context, path config.TargetPath, ns string) (labels.Selector, error) {
	if err := c.requireRollouts(); err != nil {
		return nil, err
	}
	u, err := c.Dynamic.Resource(RolloutResource).Namespace(ns).Get(ctx, path.Name, metav1.GetOptions{})
	if err != nil {
		return nil, c.notFound(ctx, err, path, ns)
	}
	if m, found, _ := unstructured.NestedMap(u.Object, "spec", "selector"); found {
		var ls metav1.LabelSelector
		if err := fromUnstructured(m, &ls); err != nil {
			return nil, fmt.Errorf("rollout %s: spec.selector: %w", path.Name, err)
		}
		sel, err := metav1.LabelSelectorAsSelector(&ls)
		return sel, err
	}
	kind, _, _ := unstructured.NestedString(u.Object, "spec", "workloadRef", "kind")
	name, _, _ := unstructured.NestedString(u.Object, "spec", "workloadRef", "name")
	if kind == "Deployment" && name != "" {
		d, err := c.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("rollout %s: its workloadRef deployment %s: %w", path.Name, name, explain(err, "get", "deployments.apps", ns))
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		return sel, err
	}
	return nil, errorf(ReasonUnsupported, nil, "rollout %s in namespace %s has neither spec.selector nor a Deployment workloadRef", path.Name, ns)
}

// requireRollouts fails clearly when Argo Rollouts is not installed.
func (c *Client) requireRollouts() error {
	ok, err := c.hasRollouts()
	if err != nil {
		return err
	}
	if !ok {
		return errorf(ReasonUnsupported, nil, "this cluster has no Argo Rollouts (the CRD rollouts.argoproj.io is not installed): target the rollout's pods or another workload kind")
	}
	return nil
}

func (c *Client) hasRollouts() (bool, error) {
	list, err := c.Clientset.Discovery().ServerResourcesForGroupVersion(RolloutResource.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovering %s: %w", RolloutResource.GroupVersion(), err)
	}
	for _, r := range list.APIResources {
		if r.Name == RolloutResource.Resource {
			return true, nil
		}
	}
	return false, nil
}

// notFound turns a Get error into one that lists what exists of that kind.
func (c *Client) notFound(ctx context.Context, err error, path config.TargetPath, ns string) error {
	if !apierrors.IsNotFound(err) {
		return explain(err, "get", resourceOf(path.Kind), ns)
	}
	names, lerr := c.names(ctx, path.Kind, ns)
	switch {
	case lerr != nil:
		return errorf(ReasonNotFound, err, "%s %s not found in namespace %s", path.Kind, path.Name, ns)
	case len(names) == 0:
		return errorf(ReasonNotFound, err, "%s %s not found in namespace %s, which has no %ss", path.Kind, path.Name, ns, path.Kind)
	}
	return errorf(ReasonNotFound, err, "%s %s not found in namespace %s; its %ss are: %s", path.Kind, path.Name, ns, path.Kind, strings.Join(names, ", "))
}

// names lists the objects of a kind in ns, sorted.
func (c *Client) names(ctx context.Context, kind config.TargetKind, ns string) ([]string, error) {
	var names []string
	opts := metav1.ListOptions{}
	switch kind {
	case config.TargetPod:
		l, err := c.Clientset.CoreV1().Pods(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
	case config.TargetDeployment:
		l, err := c.Clientset.AppsV1().Deployments(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
	case config.TargetStatefulSet:
		l, err := c.Clientset.AppsV1().StatefulSets(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
	case config.TargetReplicaSet:
		l, err := c.Clientset.AppsV1().ReplicaSets(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
	case config.TargetJob:
		l, err := c.Clientset.BatchV1().Jobs(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
	case config.TargetCronJob:
		l, err := c.Clientset.BatchV1().CronJobs(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
	case config.TargetService:
		l, err := c.Clientset.CoreV1().Services(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
	case config.TargetRollout:
		l, err := c.Dynamic.Resource(RolloutResource).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			names = append(names, o.GetName())
		}
	}
	sort.Strings(names)
	const most = 20
	if len(names) > most {
		names = append(names[:most:most], fmt.Sprintf("… (%d more)", len(names)-most))
	}
	return names, nil
}

func resourceOf(kind config.TargetKind) string {
	switch kind {
	case config.TargetPod:
		return "pods"
	case config.TargetService:
		return "services"
	case config.TargetJob, config.TargetCronJob:
		return string(kind) + "s.batch"
	case config.TargetRollout:
		return "rollouts.argoproj.io"
	}
	return string(kind) + "s.apps"
}

// pickPod chooses among a workload's pods: running and ready ones only,
// of the highest rank (the current revision), then the oldest (the one
// least likely to be replaced soon), then by name so the choice is stable.
func pickPod(pods []corev1.Pod, rank podRank) (*corev1.Pod, error) {
	var candidates []*corev1.Pod
	ranks := map[*corev1.Pod]int{}
	reasons := map[string]bool{}
	for i := range pods {
		p := &pods[i]
		if rank != nil {
			r, ok := rank(p)
			if !ok {
				continue
			}
			ranks[p] = r
		}
		if why := notRunning(p); why != "" {
			reasons[p.Name+": "+why] = true
			continue
		}
		if !podReady(p) {
			reasons[p.Name+": not ready"] = true
			continue
		}
		candidates = append(candidates, p)
	}
	if len(candidates) == 0 {
		if len(reasons) == 0 {
			return nil, fmt.Errorf("no pods")
		}
		list := make([]string, 0, len(reasons))
		for r := range reasons {
			list = append(list, r)
		}
		sort.Strings(list)
		return nil, fmt.Errorf("no running and ready pod (%s)", strings.Join(list, "; "))
	}
	sort.Slice(candidates, func(i, j int) bool {
		a, b := candidates[i], candidates[j]
		if ranks[a] != ranks[b] {
			return ranks[a] > ranks[b]
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
	return candidates[0], nil
}

// notRunning says why a pod cannot be a target, or "" if it can.
func notRunning(p *corev1.Pod) string {
	switch {
	case p.DeletionTimestamp != nil:
		return "being deleted"
	case p.Status.Phase != corev1.PodRunning:
		return "phase " + string(p.Status.Phase)
	}
	return ""
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// targetOf picks the container and fills in the Target.
func targetOf(path config.TargetPath, pod *corev1.Pod) (*Target, error) {
	ctr, err := chooseContainer(pod, path.Container)
	if err != nil {
		return nil, err
	}
	t := &Target{
		Path: path, Namespace: pod.Namespace, Pod: pod.Name, PodUID: string(pod.UID),
		Node: pod.Spec.NodeName, PodIP: pod.Status.PodIP, Container: ctr.Name,
	}
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name != ctr.Name {
			continue
		}
		if st.State.Running == nil || st.ContainerID == "" {
			return nil, errorf(ReasonNotReady, nil, "container %s of pod %s in namespace %s is not running", ctr.Name, pod.Name, pod.Namespace)
		}
		t.ContainerID = st.ContainerID
	}
	if t.ContainerID == "" {
		return nil, errorf(ReasonNotReady, nil, "container %s of pod %s in namespace %s has no status yet", ctr.Name, pod.Name, pod.Namespace)
	}
	for _, p := range ctr.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		t.Ports = append(t.Ports, Port{Name: p.Name, Port: p.ContainerPort, Protocol: proto})
	}
	t.ProbePorts = probePorts(ctr)
	for _, m := range ctr.VolumeMounts {
		t.Mounts = append(t.Mounts, m.MountPath)
	}
	t.WorkingDir = ctr.WorkingDir
	return t, nil
}

// chooseContainer returns the named container, or the pod's target
// container: kubectl's default-container annotation, else the only one
// that is not a known sidecar.
func chooseContainer(pod *corev1.Pod, name string) (*corev1.Container, error) {
	all := make([]string, len(pod.Spec.Containers))
	for i, c := range pod.Spec.Containers {
		all[i] = c.Name
	}
	if name == "" {
		// kubectl ignores a default naming no container: so do we.
		if d := pod.Annotations[defaultContainerAnnotation]; slices.Contains(all, d) {
			name = d
		}
	}
	if name != "" {
		for i := range pod.Spec.Containers {
			if pod.Spec.Containers[i].Name == name {
				return &pod.Spec.Containers[i], nil
			}
		}
		return nil, errorf(ReasonNotFound, nil, "pod %s in namespace %s has no container %s; its containers are: %s",
			pod.Name, pod.Namespace, name, strings.Join(all, ", "))
	}
	var apps []*corev1.Container
	for i := range pod.Spec.Containers {
		if !isSidecar(pod.Spec.Containers[i].Name) {
			apps = append(apps, &pod.Spec.Containers[i])
		}
	}
	switch {
	case len(apps) == 1:
		return apps[0], nil
	case len(apps) == 0 && len(pod.Spec.Containers) == 1:
		return &pod.Spec.Containers[0], nil
	}
	var names []string
	for _, c := range apps {
		names = append(names, c.Name)
	}
	if len(names) == 0 {
		names = all
	}
	return nil, errorf(ReasonAmbiguousContainer, nil, "pod %s in namespace %s has several containers (%s): choose one with KIND/NAME/container/CONTAINER, such as pod/%s/container/%s",
		pod.Name, pod.Namespace, strings.Join(names, ", "), pod.Name, names[0])
}

// probePorts lists the ports of the container's HTTP, TCP and gRPC probes,
// named ports resolved through its declared ports.
func probePorts(c *corev1.Container) []int32 {
	var ports []int32
	add := func(p intstr.IntOrString) {
		n := int32(0)
		if p.Type == intstr.Int {
			n = p.IntVal
		} else {
			for _, cp := range c.Ports {
				if cp.Name == p.StrVal {
					n = cp.ContainerPort
				}
			}
		}
		if n > 0 && !slices.Contains(ports, n) {
			ports = append(ports, n)
		}
	}
	for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if pr == nil {
			continue
		}
		switch {
		case pr.HTTPGet != nil:
			add(pr.HTTPGet.Port)
		case pr.TCPSocket != nil:
			add(pr.TCPSocket.Port)
		case pr.GRPC != nil:
			add(intstr.FromInt32(pr.GRPC.Port))
		}
	}
	slices.Sort(ports)
	return ports
}

func ownedBy(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.UID == uid {
			return true
		}
	}
	return false
}

func fromUnstructured(m map[string]any, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(m, into)
}
