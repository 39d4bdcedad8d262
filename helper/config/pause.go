package config

import (
	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// CopyTargetConfig runs the session against a copy of the target pod
// (mirrord's feature.copy_target), optionally with the workload scaled to
// zero for the session (scale_down). See docs/pause.md.
type CopyTargetConfig struct {
	// Run the session against a copy of the target pod: same spec, environment and volumes,
	// labels changed so that the workload and its Services do not select it. true, or an
	// object (an object means enabled unless "enabled" is false).
	Enabled bool `json:"enabled"`

	// Scale the Deployment or StatefulSet to zero replicas while sessions use the copy, so that
	// its pods (queue consumers, schedulers) stop and only the local process works. The replicas
	// are restored when the last session ends, and after a crash by the next doppel run or
	// "doppel cleanup" (a lease on the workload).
	ScaleDown bool `json:"scale_down"`

	// Labels added to the copy pod (doppel only), for example to have a Service select it.
	// Labels that match the workload's own selector are refused: the workload would adopt the
	// copy (and delete it when scaled down).
	Labels map[string]string `json:"labels,omitempty"`
}

func (c *CopyTargetConfig) decodeNode(d *decoder, n *yaml.Node, path string) {
	if isBool(n) {
		c.Enabled, _ = d.boolValue(n, path, "")
		return
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a boolean or an object")
		return
	}
	c.Enabled = true
	d.decodeStruct(n, reflectValue(c), path)
}

// JSONSchemaExtend adds the boolean shorthand.
func (CopyTargetConfig) JSONSchemaExtend(s *jsonschema.Schema) {
	withShorthands(s, &jsonschema.Schema{Type: "boolean"})
}

// validatePause checks "pause" and "feature.copy_target" against the
// target and the agent mode.
func (c *Config) validatePause(d *decoder) {
	kind := c.Target.Path.Kind
	ct := &c.Feature.CopyTarget
	if c.Pause {
		switch {
		case kind == TargetTargetless:
			d.errorf("pause", CodeConflict, "a targetless run has no target to freeze")
		case c.Agent.Ephemeral:
			d.errorf("pause", CodeConflict, "freezing the target needs the agent Job (it reaches the node's cgroups through hostPID): remove agent.ephemeral")
		}
		if ct.Enabled {
			d.warnf("pause", CodeConflict, "freezes the copy pod, which nothing else uses: scale_down is what stops the workload's pods")
		}
	}
	if ct.Enabled && kind == TargetTargetless {
		d.errorf("feature.copy_target", CodeConflict, "a targetless run has no target to copy")
	}
	if ct.ScaleDown && !ct.Enabled && d.has("feature.copy_target.enabled") {
		d.errorf("feature.copy_target.scale_down", CodeConflict, "needs the copy (feature.copy_target.enabled)")
	}
	if ct.ScaleDown && kind != "" && kind != TargetDeployment && kind != TargetStatefulSet {
		d.errorf("feature.copy_target.scale_down", CodeConflict, "only a deployment or statefulset target can be scaled down, not a %s", kind)
	}
	if ct.Enabled && c.Agent.Ephemeral {
		d.warnf("agent.ephemeral", CodeConflict, "the copy pod gets an ephemeral agent container, and keeps it until it is deleted at the end")
	}
}
