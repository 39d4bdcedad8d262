package kube

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/doppel-dev/doppel/helper/config"
)

// ListingVersion is the version of Listing's JSON form (`doppel ls -o
// json`, docs/ls.md). Fields may be added; a change that breaks a reader
// bumps it.
const ListingVersion = 1

// Listing is what a target picker shows: the targets of a namespace (or of
// all namespaces) and the namespaces to choose from.
type Listing struct {
	Version int `json:"version"`
	// Namespace listed, "" for all namespaces.
	Namespace string `json:"namespace"`
	// Namespaces the user can see, sorted; only the client's namespace when
	// listing namespaces is forbidden (see Warnings).
	Namespaces []string `json:"namespaces"`
	// Targets, sorted by namespace, kind (in the order of config's kinds)
	// and name.
	Targets []TargetInfo `json:"targets"`
	// Warnings are the kinds that could not be listed, and why.
	Warnings []string `json:"warnings"`
}

// TargetInfo is one target of a Listing.
type TargetInfo struct {
	// Path is what --target and the config's target.path take.
	Path      string `json:"path"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Containers of the pod template (or pod), mesh sidecars left out.
	Containers []string `json:"containers"`
	// Ready is true when at least one pod can be targeted now.
	Ready bool `json:"ready"`
	// ReadyPods and Pods count the workload's pods (for a pod: 1 or 0 of 1).
	ReadyPods int `json:"ready_pods"`
	Pods      int `json:"pods"`
}

// ListOptions select what List returns.
type ListOptions struct {
	Namespace     string // the client's namespace when empty
	AllNamespaces bool
}

// List returns the targets of a namespace, or of all namespaces. Kinds the
// user may not list are skipped with a warning rather than failing.
func (c *Client) List(ctx context.Context, opts ListOptions) (*Listing, error) {
	ns := c.namespace(opts.Namespace)
	if opts.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	out := &Listing{Version: ListingVersion, Namespace: ns, Namespaces: []string{}, Targets: []TargetInfo{}, Warnings: []string{}}
	where := "namespace " + ns
	if ns == "" {
		where = "all namespaces"
	}
	warn := func(err error, verb, resource string) {
		out.Warnings = append(out.Warnings, explain(err, verb, resource, ns).Error())
	}

	if nss, err := c.Clientset.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		for _, n := range nss.Items {
			out.Namespaces = append(out.Namespaces, n.Name)
		}
		sort.Strings(out.Namespaces)
	} else {
		warn(err, "list", "namespaces")
		out.Namespaces = append(out.Namespaces, c.Namespace)
	}

	// Pods are listed once: workload readiness is counted from them.
	pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods in %s: %w", where, explain(err, "list", "pods", ns))
	}
	byNS := map[string][]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Labels["app.kubernetes.io/name"] == AgentName {
			continue // doppel's own agents
		}
		byNS[p.Namespace] = append(byNS[p.Namespace], p)
		ready := 0
		if notRunning(p) == "" && podReady(p) {
			ready = 1
		}
		out.add(config.TargetPod, p.ObjectMeta, containerNames(p.Spec.Containers), ready, 1)
	}
	count := func(nsName string, sel labels.Selector, owner func(*corev1.Pod) bool) (ready, total int) {
		for _, p := range byNS[nsName] {
			if sel.Empty() || !sel.Matches(labels.Set(p.Labels)) || (owner != nil && !owner(p)) {
				continue
			}
			total++
			if notRunning(p) == "" && podReady(p) {
				ready++
			}
		}
		return ready, total
	}
	workload := func(kind config.TargetKind, meta metav1.ObjectMeta, ls *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec) {
		sel, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil || ls == nil {
			sel = labels.Nothing()
		}
		ready, total := count(meta.Namespace, sel, nil)
		out.add(kind, meta, containerNames(tmpl.Spec.Containers), ready, total)
	}

	if l, err := c.Clientset.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err != nil {
		warn(err, "list", "deployments.apps")
	} else {
		for _, o := range l.Items {
			workload(config.TargetDeployment, o.ObjectMeta, o.Spec.Selector, &o.Spec.Template)
		}
	}
	if l, err := c.Clientset.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{}); err != nil {
		warn(err, "list", "statefulsets.apps")
	} else {
		for _, o := range l.Items {
			workload(config.TargetStatefulSet, o.ObjectMeta, o.Spec.Selector, &o.Spec.Template)
		}
	}
	if l, err := c.Clientset.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{}); err != nil {
		warn(err, "list", "replicasets.apps")
	} else {
		for _, o := range l.Items {
			// A Deployment's old ReplicaSets (scaled to zero) are history,
			// not targets.
			if len(o.OwnerReferences) > 0 && (o.Spec.Replicas == nil || *o.Spec.Replicas == 0) {
				continue
			}
			workload(config.TargetReplicaSet, o.ObjectMeta, o.Spec.Selector, &o.Spec.Template)
		}
	}
	type jobCount struct {
		created      metav1.Time
		ready, total int
	}
	latestJob := map[string]jobCount{} // by owner UID
	if l, err := c.Clientset.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{}); err != nil {
		warn(err, "list", "jobs.batch")
	} else {
		for _, o := range l.Items {
			if o.Labels["app.kubernetes.io/name"] == AgentName {
				continue // doppel's own agents
			}
			workload(config.TargetJob, o.ObjectMeta, o.Spec.Selector, &o.Spec.Template)
			added := out.Targets[len(out.Targets)-1]
			for _, ref := range o.OwnerReferences {
				if prev, ok := latestJob[string(ref.UID)]; !ok || prev.created.Before(&o.CreationTimestamp) {
					latestJob[string(ref.UID)] = jobCount{o.CreationTimestamp, added.ReadyPods, added.Pods}
				}
			}
		}
	}
	if l, err := c.Clientset.BatchV1().CronJobs(ns).List(ctx, metav1.ListOptions{}); err != nil {
		warn(err, "list", "cronjobs.batch")
	} else {
		for _, o := range l.Items {
			// Ready when its latest job has a ready pod (what Resolve picks).
			j := latestJob[string(o.UID)]
			out.add(config.TargetCronJob, o.ObjectMeta, containerNames(o.Spec.JobTemplate.Spec.Template.Spec.Containers), j.ready, j.total)
		}
	}
	if l, err := c.Clientset.CoreV1().Services(ns).List(ctx, metav1.ListOptions{}); err != nil {
		warn(err, "list", "services")
	} else {
		for _, o := range l.Items {
			if len(o.Spec.Selector) == 0 {
				continue // no pods behind it to target
			}
			sel := labels.SelectorFromSet(o.Spec.Selector)
			ready, total := count(o.Namespace, sel, nil)
			var ctrs []string
			for _, p := range byNS[o.Namespace] {
				if sel.Matches(labels.Set(p.Labels)) {
					ctrs = containerNames(p.Spec.Containers)
					break
				}
			}
			out.add(config.TargetService, o.ObjectMeta, ctrs, ready, total)
		}
	}
	if ok, err := c.hasRollouts(); err != nil {
		out.Warnings = append(out.Warnings, err.Error())
	} else if ok {
		if l, err := c.Dynamic.Resource(RolloutResource).Namespace(ns).List(ctx, metav1.ListOptions{}); err != nil {
			warn(err, "list", "rollouts.argoproj.io")
		} else {
			for _, o := range l.Items {
				c.addRollout(ctx, out, &o, count)
			}
		}
	}
	sortTargets(out.Targets)
	return out, nil
}

func (c *Client) addRollout(ctx context.Context, out *Listing, o *unstructured.Unstructured, count func(string, labels.Selector, func(*corev1.Pod) bool) (int, int)) {
	meta := metav1.ObjectMeta{Name: o.GetName(), Namespace: o.GetNamespace()}
	var ls metav1.LabelSelector
	var tmpl corev1.PodTemplateSpec
	if m, found, _ := unstructured.NestedMap(o.Object, "spec", "selector"); found {
		_ = fromUnstructured(m, &ls)
	}
	if m, found, _ := unstructured.NestedMap(o.Object, "spec", "template"); found {
		_ = fromUnstructured(m, &tmpl)
	}
	// With a workloadRef, the Deployment it names has the pod spec (as
	// Resolve reads it).
	kind, _, _ := unstructured.NestedString(o.Object, "spec", "workloadRef", "kind")
	name, _, _ := unstructured.NestedString(o.Object, "spec", "workloadRef", "name")
	if kind == "Deployment" && name != "" && len(ls.MatchLabels)+len(ls.MatchExpressions) == 0 {
		if d, err := c.Clientset.AppsV1().Deployments(meta.Namespace).Get(ctx, name, metav1.GetOptions{}); err == nil && d.Spec.Selector != nil {
			ls, tmpl = *d.Spec.Selector, d.Spec.Template
		}
	}
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil || (len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0) {
		sel = labels.Nothing()
	}
	ready, total := count(meta.Namespace, sel, nil)
	out.add(config.TargetRollout, meta, containerNames(tmpl.Spec.Containers), ready, total)
}

func (l *Listing) add(kind config.TargetKind, meta metav1.ObjectMeta, containers []string, ready, total int) {
	if containers == nil {
		containers = []string{}
	}
	l.Targets = append(l.Targets, TargetInfo{
		Path:       string(kind) + "/" + meta.Name,
		Kind:       string(kind),
		Name:       meta.Name,
		Namespace:  meta.Namespace,
		Containers: containers,
		Ready:      ready > 0,
		ReadyPods:  ready,
		Pods:       total,
	})
}

// containerNames lists containers, sidecars left out unless only sidecars
// are there.
func containerNames(cs []corev1.Container) []string {
	names := []string{}
	for _, c := range cs {
		if !isSidecar(c.Name) {
			names = append(names, c.Name)
		}
	}
	if len(names) == 0 {
		for _, c := range cs {
			names = append(names, c.Name)
		}
	}
	return names
}

// kindOrder is the order of kinds in a listing: workloads first, as a
// picker shows them.
var kindOrder = map[string]int{
	"deployment": 0, "rollout": 1, "statefulset": 2, "cronjob": 3, "job": 4, "replicaset": 5, "service": 6, "pod": 7,
}

func sortTargets(ts []TargetInfo) {
	sort.SliceStable(ts, func(i, j int) bool {
		a, b := ts[i], ts[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return kindOrder[a.Kind] < kindOrder[b.Kind]
		}
		return a.Name < b.Name
	})
}
