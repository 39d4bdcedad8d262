package kube

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// CleanupOptions select the agents Cleanup removes.
type CleanupOptions struct {
	// User whose agents go (Client.Username); "" removes every user's.
	User string
	// Namespace to clean (the client's when empty), or all of them.
	Namespace     string
	AllNamespaces bool
}

// Removed is one agent Job or pod Cleanup deleted.
type Removed struct {
	Kind      string `json:"kind"` // "job" or "pod"
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Target    string `json:"target,omitempty"` // its doppel.dev/target annotation
}

// Cleanup deletes agent Jobs (and with them their pods) and orphaned agent
// pods. Agents exit by themselves and their Jobs' TTL removes them; this
// is for what a crash of the helper during startup or a deleted TTL
// controller leaves behind. Sessions still using a removed agent end.
func (c *Client) Cleanup(ctx context.Context, opts CleanupOptions) ([]Removed, error) {
	ns := c.namespace(opts.Namespace)
	if opts.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	set := labels.Set{LabelName: AgentName}
	if opts.User != "" {
		set[LabelUser] = UserLabel(opts.User)
	}
	sel := metav1.ListOptions{LabelSelector: set.String()}
	// The label is the user name made label-safe, which two names can
	// share (alice@corp and alice+corp): the annotation has it verbatim.
	mine := func(m metav1.ObjectMeta) bool {
		return opts.User == "" || m.Annotations[AnnotationUser] == opts.User
	}
	removed := []Removed{}
	jobs, err := c.Clientset.BatchV1().Jobs(ns).List(ctx, sel)
	if err != nil {
		return removed, explain(err, "list", "jobs.batch", ns)
	}
	// One namespace where deleting is refused does not keep the others.
	var errs []error
	background := metav1.DeletePropagationBackground
	jobNames := map[string]bool{}
	for _, j := range jobs.Items {
		if !mine(j.ObjectMeta) {
			continue
		}
		jobNames[j.Namespace+"/"+j.Name] = true
		err := c.Clientset.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: &background})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, explain(err, "delete", "jobs.batch", j.Namespace))
			continue
		}
		removed = append(removed, Removed{Kind: "job", Namespace: j.Namespace, Name: j.Name, Target: j.Annotations[AnnotationTarget]})
	}
	pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, sel)
	if err != nil {
		return removed, errors.Join(append(errs, explain(err, "list", "pods", ns))...)
	}
	for _, p := range pods.Items {
		if !mine(p.ObjectMeta) || jobNames[p.Namespace+"/"+p.Labels["job-name"]] || p.DeletionTimestamp != nil {
			continue // another's, or goes with its Job
		}
		err := c.Clientset.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, explain(err, "delete", "pods", p.Namespace))
			continue
		}
		removed = append(removed, Removed{Kind: "pod", Namespace: p.Namespace, Name: p.Name, Target: p.Annotations[AnnotationTarget]})
	}
	return removed, errors.Join(errs...)
}
