package manifests

import (
	"bytes"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

type objects struct {
	secrets     map[string]*corev1.Secret
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
}

// parse decodes every document strictly, so a misspelt field fails here
// rather than being dropped silently by the API server.
func parse(t *testing.T) objects {
	t.Helper()
	objs := objects{map[string]*corev1.Secret{}, map[string]*appsv1.Deployment{}, map[string]*corev1.Service{}}
	for i, doc := range bytes.Split(Staging, []byte("\n---\n")) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var obj metav1.Object
		switch tm.Kind {
		case "Namespace":
			obj = &corev1.Namespace{}
		case "Secret":
			obj = &corev1.Secret{}
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "Service":
			obj = &corev1.Service{}
		default:
			t.Fatalf("document %d: unexpected kind %q", i, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("document %d (%s): %v", i, tm.Kind, err)
		}
		switch o := obj.(type) {
		case *corev1.Secret:
			objs.secrets[o.Name] = o
		case *appsv1.Deployment:
			objs.deployments[o.Name] = o
		case *corev1.Service:
			objs.services[o.Name] = o
		}
		if tm.Kind != "Namespace" && obj.GetNamespace() != "staging" {
			t.Errorf("%s %s is in namespace %q, want staging", tm.Kind, obj.GetName(), obj.GetNamespace())
		}
	}
	return objs
}
func TestDeployments(t *testing.T) {
	objs := parse(t)
	images := map[string]string{
		"postgres": "doppel.local/staging-postgres:dev",
		"backend":  "doppel.local/staging-backend:dev",
		"frontend": "doppel.local/staging-frontend:dev",
	}
	for name, image := range images {
		d := objs.deployments[name]
		if d == nil {
			t.Errorf("no Deployment %s", name)
			continue
		}
		pod := d.Spec.Template
		if d.Labels["app"] != name || pod.Labels["app"] != name || d.Spec.Selector.MatchLabels["app"] != name {
			t.Errorf("%s: labels/selector are not app=%s", name, name)
		}
		if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g != 5 {
			t.Errorf("%s: terminationGracePeriodSeconds = %v, want 5", name, g)
		}
		c := pod.Spec.Containers[0]
		if c.Image != image || c.ImagePullPolicy != corev1.PullNever {
			t.Errorf("%s: image %s pull %s, want %s pull Never (no registry)", name, c.Image, c.ImagePullPolicy, image)
		}
		if c.ReadinessProbe == nil || c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s: needs a readiness probe and resource requests", name)
		}
		// Every Secret key referenced must exist.
		for _, e := range c.Env {
			if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
				s := objs.secrets[ref.SecretKeyRef.Name]
				if s == nil || s.StringData[ref.SecretKeyRef.Key] == "" {
					t.Errorf("%s: env %s refers to missing secret key %s/%s", name, e.Name, ref.SecretKeyRef.Name, ref.SecretKeyRef.Key)
				}
			}
		}
		svc := objs.services[name]
		if svc == nil || svc.Spec.Selector["app"] != name {
			t.Errorf("no Service selecting app=%s", name)
		}
	}
}

func TestPostgres(t *testing.T) {
	objs := parse(t)
	s := objs.secrets["postgres-credentials"]
	for _, k := range []string{"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} {
		if s == nil || s.StringData[k] == "" {
			t.Errorf("secret postgres-credentials lacks %s", k)
		}
	}
	pod := objs.deployments["postgres"].Spec.Template.Spec
	sc := pod.SecurityContext
	// 999:999 is the postgres entry in the image's /etc/passwd (rootfs.sh).
	if sc == nil || ptr(sc.RunAsUser) != 999 || ptr(sc.RunAsGroup) != 999 || ptr(sc.FSGroup) != 999 {
		t.Errorf("postgres securityContext = %+v, want uid/gid/fsGroup 999", sc)
	}
	c := pod.Containers[0]
	if p := c.ReadinessProbe; p.TCPSocket == nil || p.TCPSocket.Port.IntValue() != 5432 {
		t.Errorf("postgres readiness = %+v, want tcpSocket 5432", p)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/var/lib/postgresql/data" || pod.Volumes[0].EmptyDir == nil {
		t.Errorf("postgres data must be an emptyDir at /var/lib/postgresql/data")
	}
	if port := objs.services["postgres"].Spec.Ports[0]; port.Port != 5432 {
		t.Errorf("postgres Service port = %d", port.Port)
	}
}

func TestBackendAndFrontend(t *testing.T) {
	objs := parse(t)
	env := func(name string) map[string]string {
		m := map[string]string{}
		for _, e := range objs.deployments[name].Spec.Template.Spec.Containers[0].Env {
			v := e.Value
			if e.ValueFrom != nil {
				v = "secret:" + e.ValueFrom.SecretKeyRef.Key
			}
			m[e.Name] = v
		}
		return m
	}
	be := env("backend")
	want := map[string]string{
		"DB_HOST": "postgres", "DB_PORT": "5432", "DB_USER": "secret:POSTGRES_USER",
		"DB_PASSWORD": "secret:POSTGRES_PASSWORD", "DB_NAME": "secret:POSTGRES_DB",
	}
	for k, v := range want {
		if be[k] != v {
			t.Errorf("backend env %s = %q, want %q", k, be[k], v)
		}
	}
	if fe := env("frontend"); fe["BACKEND_URL"] != "http://backend" {
		t.Errorf("frontend BACKEND_URL = %q", fe["BACKEND_URL"])
	}

	c := objs.deployments["backend"].Spec.Template.Spec.Containers[0]
	if probe(c.ReadinessProbe) != "/readyz" || probe(c.LivenessProbe) != "/healthz" {
		t.Errorf("backend probes: readiness %s liveness %s, want /readyz and /healthz",
			probe(c.ReadinessProbe), probe(c.LivenessProbe))
	}
	for _, name := range []string{"backend", "frontend"} {
		c := objs.deployments[name].Spec.Template.Spec.Containers[0]
		p := objs.services[name].Spec.Ports[0]
		if c.Ports[0].ContainerPort != 8080 || p.Port != 80 || p.TargetPort.String() != c.Ports[0].Name {
			t.Errorf("%s: Service %d -> %s, container %s:%d; want 80 -> 8080",
				name, p.Port, p.TargetPort.String(), c.Ports[0].Name, c.Ports[0].ContainerPort)
		}
	}
}

func probe(p *corev1.Probe) string {
	if p == nil || p.HTTPGet == nil {
		return fmt.Sprint(p)
	}
	return p.HTTPGet.Path
}

func ptr(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}
