package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/doppel-dev/doppel/helper/config"
)

func pod(name, app string, age time.Duration, ready bool, containers ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Labels: map[string]string{"app": app},
			CreationTimestamp: metav1.NewTime(time.Unix(1e9, 0).Add(-age))},
		Spec:   corev1.PodSpec{NodeName: "node1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
	}
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c, ContainerID: "containerd://" + strings.Repeat("a", 64),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}})
	}
	return p
}

func selector(app string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

func fakeClient(objs ...runtime.Object) *Client {
	return &Client{Clientset: fake.NewClientset(objs...), Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()), Namespace: "ns"}
}

func TestResolve(t *testing.T) {
	web := pod("web-old", "web", time.Hour, true, "app", "istio-proxy")
	web.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}}
	web.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("http")}}}
	web.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(9090)}}}
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "cron", Namespace: "ns", UID: "cj"}}
	jobOld := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "cron-1", Namespace: "ns", UID: "j1", CreationTimestamp: metav1.NewTime(time.Unix(100, 0)),
		OwnerReferences: []metav1.OwnerReference{{UID: "cj"}}}, Spec: batchv1.JobSpec{Selector: selector("cron")}}
	jobNew := jobOld.DeepCopy()
	jobNew.Name, jobNew.UID, jobNew.CreationTimestamp = "cron-2", "j2", metav1.NewTime(time.Unix(200, 0))
	cronOld := pod("cron-1-x", "cron", time.Hour, true, "main")
	cronOld.OwnerReferences = []metav1.OwnerReference{{UID: "j1"}}
	cronNew := pod("cron-2-x", "cron", time.Minute, true, "main")
	cronNew.OwnerReferences = []metav1.OwnerReference{{UID: "j2"}}
	defaulted := pod("multi-default", "md", 0, true, "a", "b")
	defaulted.Annotations = map[string]string{defaultContainerAnnotation: "b"}
	stale := pod("stale-default", "sd", 0, true, "a", "istio-proxy")
	stale.Annotations = map[string]string{defaultContainerAnnotation: "renamed"}

	c := fakeClient(
		web,
		pod("web-new", "web", time.Minute, true, "app", "istio-proxy"),
		pod("web-unready", "web", 2*time.Hour, false, "app", "istio-proxy"),
		pod("multi", "multi", 0, true, "a", "b", "linkerd-proxy"),
		defaulted, stale,
		pod("lonely", "none", 0, false, "main"),
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}, Spec: appsv1.DeploymentSpec{Selector: selector("web")}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "ns"}, Spec: appsv1.DeploymentSpec{Selector: selector("x")}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "down", Namespace: "ns"}, Spec: appsv1.DeploymentSpec{Selector: selector("none")}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "external", Namespace: "ns"}},
		cj, jobOld, jobNew, cronOld, cronNew,
	)
	ctx := context.Background()
	for _, tc := range []struct {
		path, pod, container, reason, says string
	}{
		{path: "deployment/web", pod: "web-old", container: "app"},
		{path: "service/web", pod: "web-old", container: "app"},
		{path: "deployment/web/container/istio-proxy", pod: "web-old", container: "istio-proxy"},
		{path: "pod/web-new", pod: "web-new", container: "app"},
		{path: "pod/multi-default", pod: "multi-default", container: "b"},
		{path: "pod/stale-default", pod: "stale-default", container: "a"},
		{path: "cronjob/cron", pod: "cron-2-x", container: "main"},
		{path: "pod/multi", reason: ReasonAmbiguousContainer, says: "several containers (a, b)"},
		{path: "pod/multi/container/c", reason: ReasonNotFound, says: "its containers are: a, b, linkerd-proxy"},
		{path: "deployment/nope", reason: ReasonNotFound, says: "its deployments are: down, other, web"},
		{path: "statefulset/nope", reason: ReasonNotFound, says: "which has no statefulsets"},
		{path: "deployment/other", reason: ReasonNotReady, says: "no pods"},
		{path: "deployment/down", reason: ReasonNotReady, says: "lonely: not ready"},
		{path: "service/external", reason: ReasonUnsupported, says: "no selector"},
	} {
		path, err := config.ParseTargetPath(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Resolve(ctx, path, "")
		if tc.reason != "" {
			if ReasonOf(err) != tc.reason || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%s: err = %v (%s), want %s saying %q", tc.path, err, ReasonOf(err), tc.reason, tc.says)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		if got.Pod != tc.pod || got.Container != tc.container || got.Node != "node1" || got.ContainerID == "" {
			t.Errorf("%s: got %+v", tc.path, got)
		}
	}
	got, err := c.Resolve(ctx, config.TargetPath{Kind: config.TargetDeployment, Name: "web"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Ports) != 2 || got.Ports[1] != (Port{Port: 53, Protocol: "UDP"}) || got.Ports[0].Protocol != "TCP" {
		t.Errorf("ports %+v", got.Ports)
	}
	if len(got.ProbePorts) != 2 || got.ProbePorts[0] != 8080 || got.ProbePorts[1] != 9090 {
		t.Errorf("probe ports %v", got.ProbePorts)
	}
}

// During a rollout the new revision's pod is the target, not the older
// one about to go; a pod of another workload with the same labels never is.
func TestResolvePrefersTheCurrentRevision(t *testing.T) {
	owned := func(p *corev1.Pod, uid types.UID) *corev1.Pod {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{UID: uid, Controller: &yes}}
		return p
	}
	rs := func(name string, uid, owner types.UID, revision string) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: uid, Labels: map[string]string{"app": "api"},
			Annotations:     map[string]string{"deployment.kubernetes.io/revision": revision},
			OwnerReferences: []metav1.OwnerReference{{UID: owner}}}}
	}
	old := owned(pod("api-1-a", "api", time.Hour, true, "app"), "rs1")
	current := owned(pod("api-2-a", "api", time.Minute, true, "app"), "rs2")
	canary := owned(pod("canary-a", "api", 2*time.Hour, true, "app"), "rs9")
	sts0 := owned(pod("db-0", "db", time.Hour, true, "app"), "sts")
	sts0.Labels[appsv1.ControllerRevisionHashLabelKey] = "db-old"
	sts1 := owned(pod("db-1", "db", time.Minute, true, "app"), "sts")
	sts1.Labels[appsv1.ControllerRevisionHashLabelKey] = "db-new"
	c := fakeClient(old, current, canary, sts0, sts1,
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "ns", UID: "d1"}, Spec: appsv1.DeploymentSpec{Selector: selector("api")}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "canary", Namespace: "ns", UID: "d9"}, Spec: appsv1.DeploymentSpec{Selector: selector("api")}},
		rs("api-1", "rs1", "d1", "1"), rs("api-2", "rs2", "d1", "2"), rs("canary-1", "rs9", "d9", "1"),
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", UID: "sts"}, Spec: appsv1.StatefulSetSpec{Selector: selector("db")},
			Status: appsv1.StatefulSetStatus{UpdateRevision: "db-new"}},
	)
	for path, want := range map[string]string{"deployment/api": "api-2-a", "deployment/canary": "canary-a", "statefulset/db": "db-1"} {
		p, _ := config.ParseTargetPath(path)
		got, err := c.Resolve(context.Background(), p, "")
		if err != nil || got.Pod != want {
			t.Errorf("%s: %v %v, want pod %s", path, got, err, want)
		}
	}
}

func TestUserLabel(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                              "alice",
		"system:serviceaccount:ns:limited":   "system.serviceaccount.ns.limited",
		"alice@example.com":                  "alice.example.com",
		"kubernetes-admin":                   "kubernetes-admin",
		"oidc:https://issuer/#1234567890abc": "oidc.https.issuer.1234567890abc",
	} {
		if got := UserLabel(in); got != want {
			t.Errorf("UserLabel(%q) = %q, want %q", in, got, want)
		}
	}
	long := UserLabel(strings.Repeat("x", 100))
	if len(long) > 63 || long == UserLabel(strings.Repeat("x", 101)) {
		t.Errorf("long names: %q", long)
	}
}
