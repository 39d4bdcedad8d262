package config

import (
	"regexp"
	"time"

	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// AgentConfig configures the agent: a short-lived Job (or ephemeral
// container) that doppel starts next to the target and that removes itself.
// Kubernetes values are kept as plain structs and maps here; the kube
// package turns them into API objects.
type AgentConfig struct {
	// Namespace of the agent's Job. Defaults to the target's namespace. Ignored for
	// ephemeral agents, which live in the target pod.
	Namespace string `json:"namespace,omitempty"`

	// The agent image. Defaults to the doppel-agent image of this doppel version.
	Image string `json:"image,omitempty"`

	// When the node pulls the agent image: "IfNotPresent", "Always" or "Never".
	ImagePullPolicy PullPolicy `json:"image_pull_policy"`

	// Secrets for pulling the agent image from a private registry: [{"name": "SECRET"}].
	ImagePullSecrets []ImagePullSecret `json:"image_pull_secrets,omitempty"`

	// Seconds the finished agent pod is kept before Kubernetes deletes it (ttlSecondsAfterFinished).
	TTL Seconds `json:"ttl"`

	// Run the agent as an ephemeral container inside the target pod instead of a Job on its node.
	Ephemeral bool `json:"ephemeral"`

	// Run the agent container privileged. Only needed where the agent's capabilities are not
	// enough (for example Bottlerocket nodes); most clusters' policies reject privileged pods.
	Privileged bool `json:"privileged"`

	// Seconds to wait for the agent to start (image pull included) before giving up.
	StartupTimeout Seconds `json:"startup_timeout"`

	// Seconds the agent stays alive once no session is connected.
	CommunicationTimeout Seconds `json:"communication_timeout"`

	// Tolerations of the agent pod. The default tolerates every taint, because the agent must
	// run on the target's node. An empty list means no tolerations.
	Tolerations []Toleration `json:"tolerations,omitzero"`

	// CPU and memory requests and limits of the agent container.
	Resources *Resources `json:"resources,omitempty"`

	// Labels added to the agent pod.
	Labels map[string]string `json:"labels,omitempty"`

	// Annotations added to the agent pod.
	Annotations map[string]string `json:"annotations,omitempty"`

	// Node selector of the agent pod; only used for targetless runs (otherwise the agent runs
	// on the target's node).
	NodeSelector map[string]string `json:"node_selector,omitempty"`

	// Service account of the agent pod. Defaults to the namespace's default account.
	ServiceAccount string `json:"service_account,omitempty"`
}

// StartupTimeoutDuration is StartupTimeout as a time.Duration.
func (a *AgentConfig) StartupTimeoutDuration() time.Duration {
	return time.Duration(a.StartupTimeout) * time.Second
}

// CommunicationTimeoutDuration is CommunicationTimeout as a time.Duration.
func (a *AgentConfig) CommunicationTimeoutDuration() time.Duration {
	return time.Duration(a.CommunicationTimeout) * time.Second
}

// PullPolicy is a Kubernetes image pull policy.
type PullPolicy string

// The image pull policies.
const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

func (PullPolicy) enumValues() []string { return []string{"IfNotPresent", "Always", "Never"} }

// JSONSchema lists the policies.
func (p PullPolicy) JSONSchema() *jsonschema.Schema { return enumSchema(p.enumValues()) }

// ImagePullSecret names a Secret of type kubernetes.io/dockerconfigjson.
type ImagePullSecret struct {
	// The Secret's name, in the agent's namespace.
	Name string `json:"name"`
}

// Toleration is a Kubernetes pod toleration (core/v1 Toleration).
type Toleration struct {
	// The taint key; empty with operator Exists matches every taint.
	Key string `json:"key,omitempty"`
	// "Exists" or "Equal" (the default).
	Operator TolerationOperator `json:"operator,omitempty"`
	// The taint value, for operator Equal.
	Value string `json:"value,omitempty"`
	// "NoSchedule", "PreferNoSchedule" or "NoExecute"; empty matches every effect.
	Effect TaintEffect `json:"effect,omitempty"`
	// For NoExecute: seconds the pod stays bound after the taint appears.
	TolerationSeconds *int64 `json:"tolerationSeconds,omitempty"`
}

// TolerationOperator is "Exists" or "Equal".
type TolerationOperator string

func (TolerationOperator) enumValues() []string { return []string{"Exists", "Equal"} }

// JSONSchema lists the operators.
func (o TolerationOperator) JSONSchema() *jsonschema.Schema { return enumSchema(o.enumValues()) }

// TaintEffect is a Kubernetes taint effect.
type TaintEffect string

func (TaintEffect) enumValues() []string {
	return []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}
}

// JSONSchema lists the effects.
func (e TaintEffect) JSONSchema() *jsonschema.Schema { return enumSchema(e.enumValues()) }

// Resources are the requests and limits of a container (core/v1
// ResourceRequirements), as resource name to quantity: {"cpu": "100m"}.
type Resources struct {
	// Minimum resources, such as {"cpu": "100m", "memory": "64Mi"}.
	Requests map[string]Quantity `json:"requests,omitempty"`
	// Maximum resources, such as {"memory": "256Mi"}.
	Limits map[string]Quantity `json:"limits,omitempty"`
}

// Quantity is a Kubernetes quantity ("100m", "64Mi", "1"). Numbers are
// accepted and kept as their text.
type Quantity string

func (q *Quantity) decodeNode(d *decoder, n *yaml.Node, path string) {
	s, ok := d.scalarText(n, path, `a quantity such as "100m" or "64Mi"`)
	if !ok {
		return
	}
	if !quantityPattern.MatchString(s) {
		d.errorAt(n, path, CodeValue, `invalid quantity %q: expected a number with an optional suffix such as "100m", "1.5", "64Mi" or "2G"`, s)
		return
	}
	*q = Quantity(s)
}

// JSONSchema accepts strings and numbers.
func (Quantity) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{{Type: "string", Pattern: quantityPattern.String()}, {Type: "number"}}}
}

// quantityPattern is the Kubernetes quantity grammar (resource.Quantity),
// without importing k8s.io/apimachinery.
var quantityPattern = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$`)

func (a *AgentConfig) validate(d *decoder, target TargetPath) {
	if a.Ephemeral && a.Namespace != "" {
		d.warnf("agent.namespace", CodeConflict, "ignored for an ephemeral agent, which runs in the target pod")
	}
	if a.Ephemeral {
		// Kubernetes takes none of these on an ephemeral container.
		for _, f := range []struct {
			key string
			set bool
		}{
			{"agent.resources", a.Resources != nil}, {"agent.labels", a.Labels != nil}, {"agent.annotations", a.Annotations != nil},
			{"agent.tolerations", d.has("agent.tolerations")}, {"agent.node_selector", a.NodeSelector != nil},
			{"agent.service_account", a.ServiceAccount != ""}, {"agent.image_pull_secrets", a.ImagePullSecrets != nil}, {"agent.ttl", d.has("agent.ttl")},
		} {
			if f.set {
				d.warnf(f.key, CodeConflict, "ignored for an ephemeral agent, which runs in the target pod with the pod's settings")
			}
		}
	}
	if a.Ephemeral && target.Kind == TargetTargetless {
		d.errorf("agent.ephemeral", CodeConflict, "an ephemeral agent needs a target pod; targetless runs use a Job")
	}
	for i, s := range a.ImagePullSecrets {
		if s.Name == "" {
			d.errorf(indexKey("agent.image_pull_secrets", i), CodeValue, `needs a "name"`)
		}
	}
	if a.StartupTimeout == 0 {
		d.errorf("agent.startup_timeout", CodeValue, "must be at least 1 second")
	}
	for i, t := range a.Tolerations {
		path := indexKey("agent.tolerations", i)
		if t.Operator == "Exists" && t.Value != "" {
			d.errorf(path+".value", CodeConflict, `must be empty when the operator is "Exists"`)
		}
		if t.Key == "" && t.Operator != "Exists" {
			d.errorf(path, CodeValue, `a toleration without a key needs the operator "Exists"`)
		}
	}
}
