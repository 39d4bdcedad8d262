package kube

import (
	"context"
	"errors"
	"slices"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Cleanup removes the user's agents only (not another user's whose name
// makes the same label), and goes on past a namespace that refuses.
func TestCleanupIsTheUsersOnly(t *testing.T) {
	job := func(ns, name, user string) *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels:      map[string]string{LabelName: AgentName, LabelUser: UserLabel(user)},
			Annotations: map[string]string{AnnotationUser: user}}}
	}
	cs := fake.NewClientset(
		job("a", "mine-a", "alice@corp"), job("locked", "mine-locked", "alice@corp"), job("z", "mine-z", "alice@corp"),
		job("a", "theirs", "alice+corp"))
	cs.PrependReactor("delete", "jobs", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetNamespace() == "locked" {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "mine-locked",
				errors.New(`User "alice@corp" cannot delete resource "jobs" in API group "batch" in the namespace "locked"`))
		}
		return false, nil, nil
	})
	c := &Client{Clientset: cs, Namespace: "a"}
	removed, err := c.Cleanup(context.Background(), CleanupOptions{User: "alice@corp", AllNamespaces: true})
	var names []string
	for _, r := range removed {
		names = append(names, r.Namespace+"/"+r.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"a/mine-a", "z/mine-z"}) {
		t.Errorf("removed %v, want a/mine-a and z/mine-z", names)
	}
	if ReasonOf(err) != ReasonForbidden {
		t.Errorf("err = %v, want the refusal in namespace locked", err)
	}
	if _, err := cs.BatchV1().Jobs("a").Get(context.Background(), "theirs", metav1.GetOptions{}); err != nil {
		t.Errorf("another user's agent was removed: %v", err)
	}
}

// Where the API server can't say who you are, the kubeconfig's user entry
// does, so that the agents are labelled and cleanup finds them.
func TestUsernameFallsBackToTheKubeconfigUser(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "selfsubjectreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "authentication.k8s.io", Resource: "selfsubjectreviews"}, "")
	})
	c := &Client{Clientset: cs, kubeconfigUser: "dev"}
	if u, err := c.Username(context.Background()); u != "kubeconfig:dev" || err != nil {
		t.Errorf("Username = %q %v, want kubeconfig:dev", u, err)
	}
	c.kubeconfigUser = ""
	if _, err := c.Username(context.Background()); err == nil {
		t.Error("no user entry either: no error")
	}
}
