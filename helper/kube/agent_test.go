package kube

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/protocol"
)

func TestAgentJob(t *testing.T) {
	cfg := config.Default().Agent
	cfg.Image = "registry.example/doppel-agent:v1"
	cfg.ImagePullSecrets = []config.ImagePullSecret{{Name: "pull"}}
	cfg.Resources = &config.Resources{Limits: map[string]config.Quantity{"memory": "256Mi"}}
	cfg.Labels = map[string]string{"team": "a", LabelName: "overridden"}
	cfg.ServiceAccount = "agent"
	target := &Target{Namespace: "staging", Pod: "backend-1", PodUID: "uid-1", Node: "node-7", Container: "app",
		ContainerID: "containerd://" + strings.Repeat("ab", 32)}
	hash := protocol.HashToken("secret-token")
	job, err := AgentJob(AgentOptions{Target: target, Config: cfg, TokenHash: hash, User: "alice@example.com", Session: "s-1"})
	if err != nil {
		t.Fatal(err)
	}
	spec := job.Spec.Template.Spec
	ctr := spec.Containers[0]
	args := strings.Join(ctr.Args, " ")
	switch {
	case job.Namespace != "staging", *job.Spec.BackoffLimit != 0, *job.Spec.TTLSecondsAfterFinished != 1:
		t.Errorf("job %s backoff %d ttl %d", job.Namespace, *job.Spec.BackoffLimit, *job.Spec.TTLSecondsAfterFinished)
	case !spec.HostPID, spec.RestartPolicy != corev1.RestartPolicyNever, spec.ServiceAccountName != "agent":
		t.Errorf("pod spec %+v", spec)
	case spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields[0].Values[0] != "node-7":
		t.Errorf("not pinned to the node: %+v", spec.Affinity)
	case ctr.Image != cfg.Image, ctr.ImagePullPolicy != corev1.PullIfNotPresent, spec.ImagePullSecrets[0].Name != "pull":
		t.Errorf("image %s %s %v", ctr.Image, ctr.ImagePullPolicy, spec.ImagePullSecrets)
	case ctr.SecurityContext.Privileged != nil:
		t.Error("privileged without agent.privileged")
	case !slices.Equal(ctr.SecurityContext.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"}):
		t.Errorf("capabilities %v", ctr.SecurityContext.Capabilities.Add)
	case !strings.Contains(args, "--target-container-id "+target.ContainerID), !strings.Contains(args, "--token-sha256 "+hash.String()),
		strings.Contains(args, "secret-token"), !strings.Contains(args, "--listen 127.0.0.1:7463"), !strings.Contains(args, "--idle-timeout 30s"):
		t.Errorf("args %s", args)
	case ctr.Resources.Limits.Memory().String() != "256Mi":
		t.Errorf("resources %v", ctr.Resources)
	case len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists:
		t.Errorf("tolerations %v", spec.Tolerations)
	}
	if job.Name != "doppel-agent-uid-1" || job.GenerateName != "" {
		t.Errorf("shared agent job name %q (generate %q)", job.Name, job.GenerateName)
	}
	if !strings.Contains(args, "--token-file "+TokenFile) || len(spec.Volumes) != 1 ||
		spec.Volumes[0].DownwardAPI.Items[0].FieldRef.FieldPath != "metadata.annotations" ||
		ctr.VolumeMounts[0].MountPath+"/"+spec.Volumes[0].DownwardAPI.Items[0].Path != TokenFile || !ctr.VolumeMounts[0].ReadOnly {
		t.Errorf("token file: args %s volumes %+v mounts %+v", args, spec.Volumes, ctr.VolumeMounts)
	}
	meta := job.Spec.Template.ObjectMeta
	if meta.Labels[LabelName] != AgentName || meta.Labels[LabelTargetPod] != "uid-1" || meta.Labels[LabelUser] != "alice.example.com" || meta.Labels["team"] != "a" ||
		meta.Labels[LabelSession] != "s-1" || meta.Labels["sidecar.istio.io/inject"] != "false" {
		t.Errorf("labels %v", meta.Labels)
	}
	if meta.Annotations["sidecar.istio.io/inject"] != "false" || meta.Annotations["linkerd.io/inject"] != "disabled" ||
		meta.Annotations["kuma.io/sidecar-injection"] != "disabled" || meta.Annotations["consul.hashicorp.com/connect-inject"] != "false" ||
		meta.Annotations[AnnotationTarget] != "staging/backend-1/app" || meta.Annotations[AnnotationUser] != "alice@example.com" {
		t.Errorf("annotations %v", meta.Annotations)
	}

	cfg.Privileged, cfg.Namespace = true, "doppel"
	job, _ = AgentJob(AgentOptions{Target: target, Config: cfg, TokenHash: hash})
	if job.Namespace != "doppel" || !*job.Spec.Template.Spec.Containers[0].SecurityContext.Privileged {
		t.Errorf("agent.namespace / agent.privileged ignored")
	}

	job, _ = AgentJob(AgentOptions{Target: target, Config: cfg, TokenHash: hash, Exclusive: true})
	if job.Name != "" || job.GenerateName != "doppel-agent-" || len(job.Spec.Template.Spec.Volumes) != 0 ||
		slices.Contains(job.Spec.Template.Spec.Containers[0].Args, "--token-file") {
		t.Errorf("exclusive agent: name %q volumes %v args %v", job.Name, job.Spec.Template.Spec.Volumes, job.Spec.Template.Spec.Containers[0].Args)
	}

	// Both modes keep the agent's sysmon out of its deep sleep (agentEnv).
	godebug := func(env []corev1.EnvVar) string {
		for _, e := range env {
			if e.Name == "GODEBUG" {
				return e.Value
			}
		}
		return ""
	}
	if g, ge := godebug(job.Spec.Template.Spec.Containers[0].Env), godebug(EphemeralContainer(AgentOptions{Target: target, Config: cfg, TokenHash: hash}, "x", 1).Env); g != agentSchedTrace || ge != agentSchedTrace {
		t.Errorf("agent GODEBUG: job %q, ephemeral %q; want %q", g, ge, agentSchedTrace)
	}

	job, _ = AgentJob(AgentOptions{Target: target, Config: cfg, TokenHash: hash, LogLevel: "debug"})
	if args := strings.Join(job.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--log-level debug") {
		t.Errorf("doppel.log_level not passed to the agent: %s", args)
	}
	if args := strings.Join(EphemeralContainer(AgentOptions{Target: target, Config: cfg, TokenHash: hash, LogLevel: "warn"}, "x", 1).Args, " "); !strings.Contains(args, "--log-level warn") {
		t.Errorf("doppel.log_level not passed to an ephemeral agent: %s", args)
	}

	cfg = config.Default().Agent
	cfg.NodeSelector = map[string]string{"pool": "tools"}
	job, _ = AgentJob(AgentOptions{Target: &Target{Namespace: "staging"}, Config: cfg, TokenHash: hash})
	spec = job.Spec.Template.Spec
	if spec.HostPID || spec.Containers[0].SecurityContext != nil || spec.NodeSelector["pool"] != "tools" || job.Name != "" || len(spec.Volumes) != 0 ||
		!strings.Contains(strings.Join(spec.Containers[0].Args, " "), "--target-pid 1") {
		t.Errorf("targetless agent: %+v", spec)
	}
}

func TestExplainForbidden(t *testing.T) {
	api := apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "",
		errors.New(`User "x" cannot create resource "jobs" in API group "batch" in the namespace "staging"`))
	err := explain(api, "create", "jobs.batch", "staging")
	want := `cannot create jobs.batch in namespace staging: ask for RBAC verb "create" on "jobs" (API group batch)`
	if ReasonOf(err) != ReasonForbidden || !strings.Contains(err.Error(), want) || !errors.Is(err, api) {
		t.Errorf("%v", err)
	}
	psa := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "a",
		errors.New(`violates PodSecurity "baseline:latest": host namespaces (hostPID=true)`))
	err = explain(psa, "create", "pods", "staging")
	if ReasonOf(err) != ReasonPodSecurity || !strings.Contains(err.Error(), `"baseline:latest": host namespaces (hostPID=true)`) {
		t.Errorf("%v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Category() != "cluster" {
		t.Errorf("category")
	}
	// A webhook's denial is no RBAC matter: its words reach the user.
	hook := apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "doppel-agent-x",
		errors.New(`admission webhook "validation.gatekeeper.sh" denied the request: [no-host-pid] hostPID is not allowed`))
	err = explain(hook, "create", "jobs.batch", "staging")
	if ReasonOf(err) != ReasonForbidden || strings.Contains(err.Error(), "RBAC") || !strings.Contains(err.Error(), "[no-host-pid] hostPID is not allowed") {
		t.Errorf("webhook denial: %v", err)
	}
	// The subresource the call needed is named, not the server's "pods".
	sub := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "web",
		errors.New(`User "x" cannot patch resource "pods/ephemeralcontainers" in API group "" in the namespace "staging"`))
	err = explain(sub, "patch", "pods/ephemeralcontainers", "staging")
	if !strings.Contains(err.Error(), `ask for RBAC verb "patch" on "pods/ephemeralcontainers"`) {
		t.Errorf("subresource: %v", err)
	}
}

// A targetless agent needs no host access, privileged or not: a baseline
// namespace admits it; a target's agent is refused before anything is made.
func TestCheckPodSecurity(t *testing.T) {
	c := fakeClient(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}}})
	ctx := context.Background()
	if err := c.checkPodSecurity(ctx, "ns", true); err != nil {
		t.Errorf("targetless: %v", err)
	}
	if err := c.checkPodSecurity(ctx, "ns", false); ReasonOf(err) != ReasonPodSecurity {
		t.Errorf("a target's agent: %v", err)
	}
	if err := c.checkPodSecurity(ctx, "gone", true); ReasonOf(err) != ReasonNotFound {
		t.Errorf("a namespace that does not exist: %v", err)
	}
}
