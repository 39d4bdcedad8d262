package config

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// Config is a doppel configuration: a file in .doppel/ (JSON or YAML). Its
// keys follow mirrord's configuration format for the features both tools
// have, so an existing .mirrord/*.json works unchanged; doppel's own
// settings live under "doppel".
type Config struct {
	// The JSON schema this file follows; editors use it for completion. Ignored by doppel.
	Schema string `json:"$schema,omitempty"`

	// The pod (or workload) whose context the local process runs in. A string such as
	// "deployment/backend", "pod/backend-5d9c/container/app" or "targetless", or an object
	// with "path" and "namespace". Without a target, the CLI and the IDE ask for one.
	Target TargetConfig `json:"target,omitzero"`

	// The kubeconfig context to use. Defaults to the current context.
	KubeContext string `json:"kube_context,omitempty"`

	// Path to the kubeconfig file. Defaults to $KUBECONFIG, then ~/.kube/config.
	Kubeconfig string `json:"kubeconfig,omitempty"`

	// The agent that doppel starts in the cluster, next to the target.
	Agent AgentConfig `json:"agent"`

	// Freeze the target container's processes (the cgroup freezer) while sessions run, so that
	// only the local process works (queue consumers, schedulers). The pod's network stays
	// usable for doppel. Thawed when the last session ends, when the agent dies, and after a
	// crash by the next doppel run or "doppel cleanup" (a lease on the pod). See docs/pause.md.
	Pause bool `json:"pause"`

	// What the local process takes from the target: environment, files, network, hostname.
	Feature FeatureConfig `json:"feature"`

	// Programs that run without interception, by name (the executable's base name). A string
	// ("bash;make") or a list. Their child processes are judged on their own names.
	SkipProcesses NameList `json:"skip_processes,omitempty"`

	// Run build tools and debuggers (go, gcc, cargo, dlv, make, npm, ...) without
	// interception, so that "go run ." builds locally and only the program it starts is
	// intercepted. The list is in the documentation (docs/configuration.md).
	SkipBuildTools bool `json:"skip_build_tools"`

	// More build tools to run without interception when skip_build_tools is on. A string
	// ("bazel;buck") or a list.
	SkipExtraBuildTools NameList `json:"skip_extra_build_tools,omitempty"`

	// doppel's own settings, which mirrord does not have.
	Doppel DoppelConfig `json:"doppel"`

	// Source is the file the configuration was read from ("" for defaults).
	Source string `json:"-"`

	// Warnings are problems that do not stop a run: mirrord settings doppel
	// ignores, settings that have no effect.
	Warnings []*Error `json:"-"`

	origin *origin
}

// FeatureConfig selects what the local process takes from the target.
type FeatureConfig struct {
	// Environment variables: true imports the target's environment (minus the variables
	// that describe the local machine, such as PATH and HOME), false keeps the local
	// environment only, or an object to choose variables.
	Env EnvConfig `json:"env"`

	// Files: "read" (read the target's files, write locally; the default), "write"
	// (read and write the target's files), "local", "localwithoverrides", true ("read"),
	// false ("local"), or an object with the mode and path rules.
	FS FSConfig `json:"fs"`

	// Network: incoming traffic, outgoing connections and DNS. true keeps the defaults,
	// false turns all three off.
	Network NetworkConfig `json:"network"`

	// Make the local process see the target pod's hostname (gethostname, /etc/hostname).
	Hostname bool `json:"hostname"`

	// Run against a copy of the target pod, optionally with its Deployment or StatefulSet
	// scaled to zero meanwhile: true, or {"scale_down": true}. See docs/pause.md.
	CopyTarget CopyTargetConfig `json:"copy_target"`
}

// NetworkConfig groups the network features. It is true (the defaults),
// false (everything local) or an object.
type NetworkConfig struct {
	// Incoming traffic: "mirror" (a copy of the target's traffic; the default), "steal"
	// (the traffic itself), "off", true ("mirror"), false ("off"), or an object.
	Incoming IncomingConfig `json:"incoming"`

	// Outgoing connections: true (through the target; the default), false (local), or an object.
	Outgoing OutgoingConfig `json:"outgoing"`

	// DNS: true (resolve in the target's cluster; the default), false (resolve locally), or an object.
	DNS DNSConfig `json:"dns"`

	dns dnsRules // compiled by validate
}

func (c *NetworkConfig) decodeNode(d *decoder, n *yaml.Node, path string) {
	if isBool(n) {
		on, _ := d.boolValue(n, path, "")
		if !on {
			c.Incoming.Mode = IncomingOff
			c.Outgoing.TCP, c.Outgoing.UDP = false, false
			c.DNS.Enabled = false
		}
		return
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a boolean or an object")
		return
	}
	d.decodeStruct(n, reflectValue(c), path)
}

// JSONSchemaExtend adds the boolean shorthand.
func (NetworkConfig) JSONSchemaExtend(s *jsonschema.Schema) {
	withShorthands(s, &jsonschema.Schema{Type: "boolean"})
}

// DoppelConfig holds doppel's own settings (mirrord has no equivalent).
type DoppelConfig struct {
	// How much the agent logs ("kubectl logs" of its pod): "debug", "info", "warn" or "error".
	// doppel's own stderr log is set by DOPPEL_LOG.
	LogLevel LogLevel `json:"log_level"`
}

// LogLevel is a log/slog level name.
type LogLevel string

// The log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

func (LogLevel) enumValues() []string { return []string{"debug", "info", "warn", "error"} }

// JSONSchema lists the levels.
func (l LogLevel) JSONSchema() *jsonschema.Schema { return enumSchema(l.enumValues()) }

// defaults is the configuration of an empty file. Parsing decodes the file
// over it, so a key that is absent keeps its default.
func defaults() *Config {
	return &Config{
		Agent: AgentConfig{
			ImagePullPolicy:      PullIfNotPresent,
			TTL:                  1,
			StartupTimeout:       60,
			CommunicationTimeout: 30,
			// The agent runs on the target's node, whatever its taints.
			Tolerations: []Toleration{{Operator: "Exists"}},
		},
		Feature: FeatureConfig{
			Env: EnvConfig{Enabled: true},
			FS:  FSConfig{Mode: FSRead},
			Network: NetworkConfig{
				Incoming: IncomingConfig{Mode: IncomingMirror, OnPause: OnPauseCluster},
				Outgoing: OutgoingConfig{TCP: true, UDP: true, IgnoreLocalhost: true, EarlyConnect: true},
				DNS:      DNSConfig{Enabled: true},
			},
			Hostname: true,
		},
		SkipBuildTools: true,
		Doppel:         DoppelConfig{LogLevel: LogInfo},
	}
}

// withShorthands turns the object schema s into "one of: the shorthands,
// or the object", keeping the description on the outside.
func withShorthands(s *jsonschema.Schema, shorthands ...*jsonschema.Schema) {
	object := *s
	object.Description = ""
	object.Default = nil
	*s = jsonschema.Schema{Description: s.Description, OneOf: append(shorthands, &object)}
}

// KubeconfigPath is Kubeconfig with a leading "~/" expanded, as mirrord
// does ("~/.kube/config"); "" when unset.
func (c *Config) KubeconfigPath() string {
	if rest, ok := strings.CutPrefix(c.Kubeconfig, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	if c.origin != nil && c.Kubeconfig != "" {
		// Relative to the project, as every path in the file is.
		return resolvePath(c.origin.projectDir, c.Kubeconfig)
	}
	return c.Kubeconfig
}
