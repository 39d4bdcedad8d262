//go:build e2e

package e2e

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/helper/kube"
	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// An Argo Rollout target, with the Rollout CRD installed for the test (no
// Argo controller: the rollout's pod is created by the test, as the
// controller would, with the rollout's selector labels). The CRD is
// removed afterwards, so that other tests see a cluster without it.
func TestKubeResolveRollout(t *testing.T) {
	ctx := framework.Context(t, 3*time.Minute)
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "rollouts.argoproj.io"},
		"spec": map[string]any{
			"group": "argoproj.io", "scope": "Namespaced",
			"names": map[string]any{"plural": "rollouts", "singular": "rollout", "kind": "Rollout", "listKind": "RolloutList"},
			"versions": []any{map[string]any{"name": "v1alpha1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
		},
	}}
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("install the Rollout CRD: %v", err)
	}
	t.Cleanup(func() {
		cctx := framework.Context(t, time.Minute)
		crds.Delete(cctx, "rollouts.argoproj.io", metav1.DeleteOptions{})
		// Gone from discovery before the next test looks for it.
		framework.Eventually(t, time.Minute, func() error {
			if _, err := cluster.Client.Discovery().ServerResourcesForGroupVersion("argoproj.io/v1alpha1"); err == nil {
				return fmt.Errorf("argoproj.io/v1alpha1 still served")
			}
			return nil
		})
	})

	ns := cluster.Namespace(t, "rollout")
	rollouts := dyn.Resource(kube.RolloutResource).Namespace(ns)
	framework.Eventually(t, time.Minute, func() error {
		_, err := rollouts.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
			"metadata": map[string]any{"name": "web"},
			"spec": map[string]any{"replicas": int64(1),
				"selector": map[string]any{"matchLabels": map[string]any{"app": "rollout-web"}}},
		}}, metav1.CreateOptions{})
		return err // the CRD takes a moment to be established
	})
	pod := framework.ToolboxPod("web-7f9c", "sleep")
	pod.Labels = map[string]string{"app": "rollout-web", "rollouts-pod-template-hash": "7f9c"}
	pod = cluster.RunPod(t, ns, pod)

	client := kubeClient(t, ns)
	path, err := config.ParseTargetPath("rollout/web")
	if err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, time.Minute, func() error {
		got, err := client.Resolve(ctx, path, "")
		if err != nil {
			return err
		}
		if got.Pod != pod.Name || got.Container != "main" {
			t.Fatalf("rollout/web resolved to %s/%s, want %s/main", got.Pod, got.Container, pod.Name)
		}
		return nil
	})

	// A Rollout whose pods a Deployment's spec describes (workloadRef):
	// resolved and listed through that Deployment.
	deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "ref"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr(int32(0)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "rollout-ref"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "rollout-ref"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "unused"}}}}}}
	if _, err := cluster.Client.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rollouts.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": map[string]any{"name": "ref"},
		"spec": map[string]any{"workloadRef": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "ref"}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	refPod := framework.ToolboxPod("ref-1a2b", "sleep")
	refPod.Labels = map[string]string{"app": "rollout-ref"}
	refPod = cluster.RunPod(t, ns, refPod)
	refPath, _ := config.ParseTargetPath("rollout/ref")
	if got, err := client.Resolve(ctx, refPath, ""); err != nil || got.Pod != refPod.Name {
		t.Errorf("rollout/ref resolved to %v %v, want pod %s", got, err, refPod.Name)
	}
	listing, err := client.List(ctx, kube.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tg := range listing.Targets {
		if tg.Path == "rollout/ref" {
			found = true
			if !tg.Ready || tg.ReadyPods != 1 || len(tg.Containers) != 1 || tg.Containers[0] != "main" {
				t.Errorf("doppel ls shows rollout/ref as %+v, want its Deployment's pod and container", tg)
			}
		}
	}
	if !found {
		t.Errorf("doppel ls does not show rollout/ref: %+v", listing.Targets)
	}

	missing, _ := config.ParseTargetPath("rollout/nope")
	if _, err := client.Resolve(ctx, missing, ""); kube.ReasonOf(err) != kube.ReasonNotFound {
		t.Errorf("rollout/nope: %v (reason %q), want not_found", err, kube.ReasonOf(err))
	}
}
