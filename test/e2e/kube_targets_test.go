//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/doppel-dev/doppel/helper/cli"
	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/helper/kube"
	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// kubeClient is doppel's own client for the cluster under test.
func kubeClient(t *testing.T, ns string) *kube.Client {
	t.Helper()
	c, err := kube.NewForConfig(cluster.Config, ns)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func toolboxTemplate(app string, args ...string) corev1.PodTemplateSpec {
	pod := framework.ToolboxPod(app, args...)
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}}, Spec: pod.Spec}
}

// webTemplate serves HTTP on 8080 with a readiness probe and an
// istio-proxy-named sidecar doppel must skip.
func webTemplate(app string) corev1.PodTemplateSpec {
	tmpl := toolboxTemplate(app, "serve", "-port", "8080")
	main := &tmpl.Spec.Containers[0]
	main.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	main.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
		PeriodSeconds: 1,
	}
	sidecar := framework.ToolboxPod("x", "sleep").Spec.Containers[0]
	sidecar.Name = "istio-proxy"
	tmpl.Spec.Containers = append(tmpl.Spec.Containers, sidecar)
	return tmpl
}

// targetWorkloads creates one workload of every kind in ns and waits until
// each has a ready pod.
func targetWorkloads(t *testing.T, ns string) {
	t.Helper()
	ctx := framework.Context(t, 3*time.Minute)
	cs := cluster.Client
	one := int32(1)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: webTemplate("web")},
	}, metav1.CreateOptions{}))
	must(cs.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: toolboxTemplate("db", "sleep")},
	}, metav1.CreateOptions{}))
	must(cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "rs"},
		Spec: appsv1.ReplicaSetSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "rs"}},
			Template: toolboxTemplate("rs", "sleep")},
	}, metav1.CreateOptions{}))
	jobTmpl := toolboxTemplate("batch", "sleep")
	jobTmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	must(cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "batch"},
		Spec:       batchv1.JobSpec{Template: jobTmpl},
	}, metav1.CreateOptions{}))
	// A CronJob that never fires by itself, and a Job made from it the way
	// `kubectl create job --from=cronjob/…` does.
	cronTmpl := toolboxTemplate("cron", "sleep")
	cronTmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	suspend := true
	cj, err := cs.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "cron"},
		Spec: batchv1.CronJobSpec{Schedule: "0 0 1 1 *", Suspend: &suspend,
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: cronTmpl}}},
	}, metav1.CreateOptions{})
	must(cj, err)
	must(cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "cron-manual", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID}}},
		Spec: batchv1.JobSpec{Template: cronTmpl},
	}, metav1.CreateOptions{}))
	must(cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(8080)}}},
	}, metav1.CreateOptions{}))
	multi := framework.ToolboxPod("multi", "sleep")
	second := multi.Spec.Containers[0]
	second.Name = "second"
	multi.Spec.Containers = append(multi.Spec.Containers, second)
	cluster.RunPod(t, ns, multi)

	for _, app := range []string{"web", "db", "rs", "batch", "cron"} {
		framework.Eventually(t, 2*time.Minute, func() error {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err != nil {
				return err
			}
			for _, p := range pods.Items {
				if _, err := cluster.WaitPodReady(framework.Context(t, 5*time.Second), ns, p.Name); err == nil {
					return nil
				}
			}
			return errNotReady(app)
		})
	}
}

type errNotReady string

func (e errNotReady) Error() string { return string(e) + " has no ready pod yet" }

func TestKubeResolveTargets(t *testing.T) {
	ns := cluster.Namespace(t, "targets")
	targetWorkloads(t, ns)
	client := kubeClient(t, ns)
	ctx := framework.Context(t, 2*time.Minute)

	for _, tc := range []struct {
		path, app, container string
	}{
		{"deployment/web", "web", "main"},
		{"statefulset/db", "db", "main"},
		{"replicaset/rs", "rs", "main"},
		{"job/batch", "batch", "main"},
		{"cronjob/cron", "cron", "main"},
		{"service/web", "web", "main"},
		{"deployment/web/container/istio-proxy", "web", "istio-proxy"},
		{"pod/multi/container/second", "multi", "second"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			path, err := config.ParseTargetPath(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := client.Resolve(ctx, path, "")
			if err != nil {
				t.Fatal(err)
			}
			pod, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, got.Pod, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if pod.Labels["app"] != tc.app || got.Container != tc.container || got.Namespace != ns {
				t.Fatalf("resolved to pod %s (app %s) container %s in %s", got.Pod, pod.Labels["app"], got.Container, got.Namespace)
			}
			if got.Node != pod.Spec.NodeName || got.PodIP != pod.Status.PodIP || got.PodUID != string(pod.UID) {
				t.Errorf("node/IP/UID %s %s %s, pod has %s %s %s", got.Node, got.PodIP, got.PodUID, pod.Spec.NodeName, pod.Status.PodIP, pod.UID)
			}
			if !strings.HasPrefix(got.ContainerID, "containerd://") {
				t.Errorf("container id %q", got.ContainerID)
			}
			if tc.path == "deployment/web" {
				if len(got.Ports) != 1 || got.Ports[0] != (kube.Port{Name: "http", Port: 8080, Protocol: "TCP"}) {
					t.Errorf("ports %+v", got.Ports)
				}
				if len(got.ProbePorts) != 1 || got.ProbePorts[0] != 8080 {
					t.Errorf("probe ports %v", got.ProbePorts)
				}
			}
		})
	}

	for _, tc := range []struct {
		path, reason string
		says         []string
	}{
		{"pod/multi", kube.ReasonAmbiguousContainer, []string{"main, second", "pod/multi/container/main"}},
		{"deployment/nope", kube.ReasonNotFound, []string{"deployment nope not found in namespace " + ns, "web"}},
		{"statefulset/nope", kube.ReasonNotFound, []string{"db"}},
		{"cronjob/nope", kube.ReasonNotFound, []string{"cron"}},
		{"service/nope", kube.ReasonNotFound, []string{"web"}},
		{"pod/web/container/nope", kube.ReasonNotFound, []string{"pod web not found"}},
		{"rollout/web", kube.ReasonUnsupported, []string{"Argo Rollouts", "rollouts.argoproj.io"}},
	} {
		t.Run("error "+tc.path, func(t *testing.T) {
			path, err := config.ParseTargetPath(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = client.Resolve(ctx, path, "")
			if kube.ReasonOf(err) != tc.reason {
				t.Fatalf("err = %v (reason %q), want reason %s", err, kube.ReasonOf(err), tc.reason)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}

	t.Run("targetless", func(t *testing.T) {
		got, err := client.Resolve(ctx, config.TargetPath{Kind: config.TargetTargetless}, "")
		if err != nil || !got.Targetless() || got.Namespace != ns {
			t.Fatalf("%+v %v", got, err)
		}
	})
}

func TestKubeLs(t *testing.T) {
	ns := cluster.Namespace(t, "ls")
	targetWorkloads(t, ns)

	var out, errOut bytes.Buffer
	cmd := cli.NewCommand(cli.Deps{Streams: cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut}})
	cmd.SetArgs([]string{"ls", "-n", ns, "-o", "json"})
	if err := cmd.ExecuteContext(framework.Context(t, time.Minute)); err != nil {
		t.Fatalf("doppel ls: %v\n%s", err, errOut.String())
	}
	var listing kube.Listing
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&listing); err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Errorf("more than one JSON value: %v", err)
	}
	if listing.Version != kube.ListingVersion || listing.Namespace != ns {
		t.Errorf("version %d namespace %q", listing.Version, listing.Namespace)
	}
	found := false
	for _, n := range listing.Namespaces {
		found = found || n == ns
	}
	if !found {
		t.Errorf("namespaces %v lack %s", listing.Namespaces, ns)
	}
	byPath := map[string]kube.TargetInfo{}
	for _, tg := range listing.Targets {
		if tg.Namespace != ns {
			t.Errorf("target %s of namespace %s", tg.Path, tg.Namespace)
		}
		byPath[tg.Path] = tg
	}
	for _, p := range []string{"deployment/web", "statefulset/db", "replicaset/rs", "job/batch", "cronjob/cron", "service/web", "pod/multi"} {
		tg, ok := byPath[p]
		if !ok {
			t.Errorf("%s missing from %+v", p, listing.Targets)
			continue
		}
		if !tg.Ready || tg.ReadyPods != 1 || tg.Pods != 1 {
			t.Errorf("%s: ready %v %d/%d", p, tg.Ready, tg.ReadyPods, tg.Pods)
		}
	}
	if c := byPath["deployment/web"].Containers; len(c) != 1 || c[0] != "main" {
		t.Errorf("deployment/web containers %v, want [main] (the sidecar left out)", c)
	}
	if c := byPath["pod/multi"].Containers; len(c) != 2 {
		t.Errorf("pod/multi containers %v", c)
	}
}
