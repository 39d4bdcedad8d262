package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// AnnotationLease holds a pause lease (JSON, see Lease) on the object a
// session changed: the frozen pod, the scaled-down workload, the copy pod.
const AnnotationLease = "doppel.dev/pause-lease"

// Lease timing: every session renews its hold every LeaseRenew; a hold not
// renewed for LeaseDuration is stale, and whoever finds only stale holds
// (a later doppel run, `doppel cleanup`) undoes what the lease stands for.
const (
	LeaseDuration = 30 * time.Second
	LeaseRenew    = 10 * time.Second
)

// Lease kinds.
const (
	LeaseFreeze    = "freeze"     // on the target pod: frozen by its agent
	LeaseScaleDown = "scale-down" // on a Deployment/StatefulSet: replicas set to 0
	LeaseCopy      = "copy"       // on a copy pod: deleted when the last holder goes
)

// Lease is what AnnotationLease holds.
type Lease struct {
	Kind string `json:"kind"`
	// Holders maps each session using the object to its hold's expiry.
	Holders map[string]time.Time `json:"holders"`
	// Replicas is the workload's replica count before the scale-down.
	Replicas *int32 `json:"replicas,omitempty"`
	// Copy is the copy pod a scale-down session runs against.
	Copy string `json:"copy,omitempty"`
	// ContainerID and Node name the frozen container (freeze leases), so
	// that a thaw can be done without its agent.
	ContainerID string `json:"container_id,omitempty"`
	Node        string `json:"node,omitempty"`
	// Ending is when the last holder began undoing what the lease stands
	// for (restoring the replicas, deleting the copy): until the lease is
	// gone, or endingWait later, nobody takes it (their scale-down would
	// be undone by the restore still under way).
	Ending *time.Time `json:"ending,omitempty"`
}

// endingWait is how long a lease's end is left to its ender; past it the
// ender is taken for dead and the lease for stale.
const endingWait = 30 * time.Second

// ending reports whether someone is ending the lease at now.
func (l *Lease) ending(now time.Time) bool {
	return l.Ending != nil && !l.Live(now) && now.Sub(*l.Ending) < endingWait
}

// ParseLease reads an annotation value; nil for "".
func ParseLease(s string) (*Lease, error) {
	if s == "" {
		return nil, nil
	}
	var l Lease
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AnnotationLease, err)
	}
	if l.Holders == nil {
		l.Holders = map[string]time.Time{}
	}
	return &l, nil
}

// Live reports whether some hold is still valid at now.
func (l *Lease) Live(now time.Time) bool {
	for _, exp := range l.Holders {
		if exp.After(now) {
			return true
		}
	}
	return false
}

// Prune drops the holds that expired before now.
func (l *Lease) Prune(now time.Time) {
	maps.DeleteFunc(l.Holders, func(_ string, exp time.Time) bool { return !exp.After(now) })
}

// Hold adds or renews session's hold until now+d.
func (l *Lease) Hold(session string, now time.Time, d time.Duration) {
	if l.Holders == nil {
		l.Holders = map[string]time.Time{}
	}
	l.Holders[session] = now.Add(d).UTC().Truncate(time.Second)
}

// Sessions returns the holders, sorted.
func (l *Lease) Sessions() []string {
	return slices.Sorted(maps.Keys(l.Holders))
}

// ObjectRef names an object that carries a lease.
type ObjectRef struct {
	Kind      string `json:"kind"` // "pod", "deployment" or "statefulset"
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (r ObjectRef) String() string { return r.Kind + "/" + r.Name + " in namespace " + r.Namespace }

// errNoObject: the object carrying the lease is gone.
var errNoObject = errors.New("the object is gone")

// getAnnotations returns an object's annotations and resourceVersion.
func (c *Client) getAnnotations(ctx context.Context, r ObjectRef) (map[string]string, string, error) {
	var meta metav1.ObjectMeta
	var err error
	switch r.Kind {
	case "pod":
		p, e := c.Clientset.CoreV1().Pods(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		err = e
		if err == nil {
			meta = p.ObjectMeta
		}
	case "deployment":
		d, e := c.Clientset.AppsV1().Deployments(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		err = e
		if err == nil {
			meta = d.ObjectMeta
		}
	case "statefulset":
		s, e := c.Clientset.AppsV1().StatefulSets(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		err = e
		if err == nil {
			meta = s.ObjectMeta
		}
	default:
		return nil, "", fmt.Errorf("kube: no leases on %s", r.Kind)
	}
	if apierrors.IsNotFound(err) {
		return nil, "", errNoObject
	}
	if err != nil {
		return nil, "", explain(err, "get", r.Kind+"s", r.Namespace)
	}
	return meta.Annotations, meta.ResourceVersion, nil
}

// patchObject applies a JSON merge patch to the object.
func (c *Client) patchObject(ctx context.Context, r ObjectRef, patch []byte) error {
	var err error
	switch r.Kind {
	case "pod":
		_, err = c.Clientset.CoreV1().Pods(r.Namespace).Patch(ctx, r.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	case "deployment":
		_, err = c.Clientset.AppsV1().Deployments(r.Namespace).Patch(ctx, r.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	case "statefulset":
		_, err = c.Clientset.AppsV1().StatefulSets(r.Namespace).Patch(ctx, r.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	}
	return err
}

// UpdateLease reads the object's lease (nil when it has none), lets f
// change it (returning nil removes the annotation) and writes it back,
// retrying when another session changed the object meanwhile (the patch
// carries the resourceVersion it was computed from). It returns the lease
// as written.
func (c *Client) UpdateLease(ctx context.Context, r ObjectRef, f func(l *Lease) (*Lease, error)) (*Lease, error) {
	for attempt := 0; ; attempt++ {
		ann, rv, err := c.getAnnotations(ctx, r)
		if err != nil {
			return nil, err
		}
		old, err := ParseLease(ann[AnnotationLease])
		if err != nil {
			old = nil // unreadable: start over
		}
		l, err := f(old)
		if err != nil {
			return nil, err
		}
		var value any // nil removes the annotation
		if l != nil {
			b, err := json.Marshal(l)
			if err != nil {
				return nil, err
			}
			value = string(b)
		}
		if l == nil && old == nil {
			return nil, nil
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
			"resourceVersion": rv,
			"annotations":     map[string]any{AnnotationLease: value},
		}})
		err = c.patchObject(ctx, r, patch)
		switch {
		case err == nil:
			return l, nil
		case apierrors.IsConflict(err) && attempt < 20:
			continue
		case apierrors.IsNotFound(err):
			return nil, errNoObject
		default:
			return nil, explain(err, "patch", r.Kind+"s", r.Namespace)
		}
	}
}
