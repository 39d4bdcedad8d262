package config

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// TargetConfig names the pod the local process runs "inside". In the file
// it is an object, or a string that is the path alone ("deployment/backend").
type TargetConfig struct {
	// The target: "KIND/NAME" or "KIND/NAME/container/CONTAINER" (KIND is pod, deployment,
	// statefulset, replicaset, rollout, job, cronjob or service), or "targetless" to run
	// with the cluster's network and DNS but no pod's environment, files or traffic.
	// mirrord's object form ({"deployment": "backend", "container": "app"}) is accepted too.
	Path TargetPath `json:"path,omitzero"`

	// The target's namespace. Defaults to the kubeconfig context's namespace.
	Namespace string `json:"namespace,omitempty"`
}

func (t *TargetConfig) decodeNode(d *decoder, n *yaml.Node, path string) {
	if isString(n) {
		d.decode(n, reflectValue(&t.Path), joinKey(path, "path"))
		return
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, `a string such as "deployment/NAME" or an object`)
		return
	}
	d.decodeStruct(n, reflectValue(t), path)
}

// JSONSchemaExtend adds the string shorthand.
func (TargetConfig) JSONSchemaExtend(s *jsonschema.Schema) {
	withShorthands(s, targetPathString())
}

// TargetKind is the kind of Kubernetes object a target names.
type TargetKind string

// The target kinds.
const (
	TargetPod         TargetKind = "pod"
	TargetDeployment  TargetKind = "deployment"
	TargetStatefulSet TargetKind = "statefulset"
	TargetReplicaSet  TargetKind = "replicaset"
	TargetRollout     TargetKind = "rollout"
	TargetJob         TargetKind = "job"
	TargetCronJob     TargetKind = "cronjob"
	TargetService     TargetKind = "service"
	// TargetTargetless runs without a pod: network and DNS go through an
	// agent in the cluster, nothing else.
	TargetTargetless TargetKind = "targetless"
)

var targetKinds = []string{"pod", "deployment", "statefulset", "replicaset", "rollout", "job", "cronjob", "service"}

// TargetPath is a parsed target path. The zero value means "not chosen".
type TargetPath struct {
	Kind      TargetKind
	Name      string
	Container string // "" for the pod's default container
}

// IsZero reports whether no target was chosen.
func (p TargetPath) IsZero() bool { return p.Kind == "" }

// String returns the path as written in files: "deployment/x/container/c".
func (p TargetPath) String() string {
	switch {
	case p.Kind == "" || p.Kind == TargetTargetless:
		return string(p.Kind)
	case p.Container != "":
		return fmt.Sprintf("%s/%s/container/%s", p.Kind, p.Name, p.Container)
	}
	return fmt.Sprintf("%s/%s", p.Kind, p.Name)
}

// MarshalJSON writes the string form.
func (p TargetPath) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// ParseTargetPath parses "KIND/NAME[/container/CONTAINER]" or "targetless".
func ParseTargetPath(s string) (TargetPath, error) {
	if s == string(TargetTargetless) {
		return TargetPath{Kind: TargetTargetless}, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) == 1 {
		if best := suggest(s, []string{"targetless"}); best != "" {
			return TargetPath{}, fmt.Errorf("invalid target %q (did you mean %q?)", s, best)
		}
		return TargetPath{}, fmt.Errorf(`invalid target %q: expected KIND/NAME such as "pod/%s" or "deployment/%s", or "targetless"`, s, s, s)
	}
	if len(parts) != 2 && !(len(parts) == 4 && parts[2] == "container") {
		return TargetPath{}, fmt.Errorf(`invalid target %q: expected KIND/NAME or KIND/NAME/container/CONTAINER`, s)
	}
	p := TargetPath{Kind: TargetKind(parts[0]), Name: parts[1]}
	if len(parts) == 4 {
		if parts[3] == "" {
			return TargetPath{}, fmt.Errorf(`invalid container name "" in %q`, s)
		}
		p.Container = parts[3]
	}
	return p, p.check()
}

func (p TargetPath) check() error {
	if !isTargetKind(string(p.Kind)) {
		return fmt.Errorf("invalid target kind %s", strings.TrimPrefix(enumMessage(string(p.Kind), targetKinds), "invalid value "))
	}
	if !dnsSubdomain.MatchString(p.Name) {
		return fmt.Errorf("invalid %s name %q: Kubernetes names are lowercase letters, digits, '-' and '.'", p.Kind, p.Name)
	}
	if p.Container != "" && !dnsLabel.MatchString(p.Container) {
		return fmt.Errorf("invalid container name %q: container names are lowercase letters, digits and '-'", p.Container)
	}
	return nil
}

func isTargetKind(k string) bool {
	for _, kind := range targetKinds {
		if k == kind {
			return true
		}
	}
	return false
}

var (
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

func (p *TargetPath) decodeNode(d *decoder, n *yaml.Node, path string) {
	switch {
	case isString(n):
		parsed, err := ParseTargetPath(n.Value)
		if err != nil {
			d.errorAt(n, path, CodeValue, "%v", err)
			return
		}
		*p = parsed
	case n.Kind == yaml.MappingNode:
		// mirrord's object form: {"deployment": "x", "container": "c"}.
		var parsed TargetPath
		for _, e := range d.entries(n, path, 0) {
			child := joinKey(path, e.name)
			v := d.resolve(e.value)
			if v == nil {
				return
			}
			d.values[child] = pos{v.Line, v.Column}
			s, ok := d.stringValue(v, child, "a string")
			if !ok {
				continue
			}
			switch {
			case e.name == "container":
				parsed.Container = s
			case isTargetKind(e.name) && parsed.Kind == "":
				parsed.Kind, parsed.Name = TargetKind(e.name), s
			case isTargetKind(e.name):
				d.errorAt(e.key, child, CodeConflict, "a target has one kind, %s is already set", parsed.Kind)
			default:
				d.unknownKey(e.key, path, e.name, append([]string{"container"}, targetKinds...))
			}
		}
		if parsed.Kind == "" {
			d.errorAt(n, path, CodeValue, "the target object needs one of the keys %s", strings.Join(targetKinds, ", "))
			return
		}
		if err := parsed.check(); err != nil {
			d.errorAt(n, path, CodeValue, "%v", err)
			return
		}
		*p = parsed
	default:
		d.typeError(n, path, `a string such as "deployment/NAME"`)
	}
}

// JSONSchema describes the string and the object forms.
func (TargetPath) JSONSchema() *jsonschema.Schema {
	object := &jsonschema.Schema{Type: "object", Properties: jsonschema.NewProperties(), AdditionalProperties: jsonschema.FalseSchema,
		MinProperties: ptr(uint64(1))}
	for _, k := range targetKinds {
		object.Properties.Set(k, &jsonschema.Schema{Type: "string", Description: "the " + k + "'s name"})
	}
	object.Properties.Set("container", &jsonschema.Schema{Type: "string", Description: "the container's name"})
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{targetPathString(), object}}
}

func targetPathString() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:     "string",
		Pattern:  `^(targetless|(` + strings.Join(targetKinds, "|") + `)/[a-z0-9.-]+(/container/[a-z0-9-]+)?)$`,
		Examples: []any{"deployment/backend", "pod/backend-5d9c/container/app", "targetless"},
	}
}

func ptr[T any](v T) *T { return &v }
