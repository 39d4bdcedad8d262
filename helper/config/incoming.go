package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/dlclark/regexp2"
	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// IncomingConfig decides what happens to the traffic that reaches the
// target on the ports the local process listens on. In the file it is a
// mode string, a boolean (true is "mirror", false is "off") or an object.
type IncomingConfig struct {
	// "mirror": the target keeps its traffic and the local process gets a copy (its responses
	// are dropped). "steal": the local process gets the traffic instead of the target (all of
	// it, or the HTTP requests that match http_filter). "off": no incoming traffic.
	Mode IncomingMode `json:"mode"`

	// Steal only the HTTP requests that match; the others go to the target unchanged. Use one
	// of header_filter, path_filter, method_filter, all_of and any_of. Only used in steal mode.
	HTTPFilter HTTPFilterConfig `json:"http_filter,omitzero"`

	// Local ports that stand for other ports of the target: [[LOCAL, REMOTE], ...]. With
	// [[9333, 80]], a process listening on 9333 gets the target's port 80 traffic.
	PortMapping []PortPair `json:"port_mapping,omitempty"`

	// Only these ports (after port_mapping) are mirrored or stolen; the others stay local.
	// Cannot be used with ignore_ports.
	Ports []Port `json:"ports,omitzero"`

	// Ports never mirrored or stolen (health checks, metrics, debugger ports).
	IgnorePorts []Port `json:"ignore_ports,omitempty"`

	// Ports to really listen on locally: [[PORT, LOCAL_PORT], ...]. With [[80, 4480]], a
	// process that listens on 80 gets the target's port 80 traffic and is reachable locally on
	// 4480. Without an entry, doppel listens on the port itself, or on a free port if it is taken.
	ListenPorts []PortPair `json:"listen_ports,omitempty"`

	// Do not mirror or steal for sockets that listen on a loopback address only.
	IgnoreLocalhost bool `json:"ignore_localhost"`

	// Reset the port's existing connections when the subscription starts, so that keep-alive
	// clients (other pods, load balancers) reconnect and reach the local process. Defaults to
	// true for steal and false for mirror (a mirror never disturbs the target's traffic).
	FlushConnections *bool `json:"flush_connections,omitempty"`

	// When another session already steals the same port without a filter: "abort" (fail),
	// "continue" (run without stealing that port) or "override" (take it over).
	OnConcurrentSteal ConcurrentSteal `json:"on_concurrent_steal,omitempty"`

	// Where new connections of an unfiltered steal go while the local process is paused in a
	// debugger (doppel ide): "cluster" (the target's own server answers them, so a breakpoint
	// blocks nobody else) or "local" (they wait for the paused process). Connections already
	// stolen, filtered steals and mirrors are not affected.
	OnPause OnPause `json:"on_pause,omitempty"`
}

// OnPause is where an unfiltered steal's new connections go while the
// debuggee is paused.
type OnPause string

// The on_pause values.
const (
	OnPauseCluster OnPause = "cluster"
	OnPauseLocal   OnPause = "local"
)

func (OnPause) enumValues() []string { return []string{"cluster", "local"} }

// JSONSchema lists the values.
func (o OnPause) JSONSchema() *jsonschema.Schema { return enumSchema(o.enumValues()) }

func (c *IncomingConfig) decodeNode(d *decoder, n *yaml.Node, path string) {
	switch {
	case isBool(n):
		if on, _ := d.boolValue(n, path, ""); on {
			c.Mode = IncomingMirror
		} else {
			c.Mode = IncomingOff
		}
	case isString(n):
		d.decode(n, reflectValue(&c.Mode), joinKey(path, "mode"))
	case n.Kind == yaml.MappingNode:
		d.decodeStruct(n, reflectValue(c), path)
	default:
		d.typeError(n, path, `a mode ("mirror", "steal", "off"), a boolean or an object`)
	}
}

// JSONSchemaExtend adds the boolean and mode shorthands.
func (IncomingConfig) JSONSchemaExtend(s *jsonschema.Schema) {
	withShorthands(s, &jsonschema.Schema{Type: "boolean"}, enumSchema(IncomingMode("").enumValues()))
}

// IncomingMode is how incoming traffic is handled.
type IncomingMode string

// The incoming modes.
const (
	IncomingMirror IncomingMode = "mirror"
	IncomingSteal  IncomingMode = "steal"
	IncomingOff    IncomingMode = "off"
)

func (IncomingMode) enumValues() []string { return []string{"mirror", "steal", "off"} }

// JSONSchema lists the modes.
func (m IncomingMode) JSONSchema() *jsonschema.Schema { return enumSchema(m.enumValues()) }

// ConcurrentSteal is what to do when a port is already stolen by another session.
type ConcurrentSteal string

// The concurrent steal policies.
const (
	ConcurrentStealAbort    ConcurrentSteal = "abort"
	ConcurrentStealContinue ConcurrentSteal = "continue"
	ConcurrentStealOverride ConcurrentSteal = "override"
)

func (ConcurrentSteal) enumValues() []string { return []string{"abort", "continue", "override"} }

// JSONSchema lists the policies.
func (c ConcurrentSteal) JSONSchema() *jsonschema.Schema { return enumSchema(c.enumValues()) }

// Flush reports whether existing connections are reset when a port is
// subscribed (flush_connections, or its default for the mode).
func (c *IncomingConfig) Flush() bool {
	if c.FlushConnections != nil {
		return *c.FlushConnections
	}
	return c.Mode == IncomingSteal
}

// RemotePort is the target's port whose traffic a local listener on port
// gets (port_mapping).
func (c *IncomingConfig) RemotePort(local uint16) uint16 {
	for _, m := range c.PortMapping {
		if uint16(m[0]) == local {
			return uint16(m[1])
		}
	}
	return local
}

// Subscribes reports whether traffic to the target's port is mirrored or
// stolen (mode, ports and ignore_ports).
func (c *IncomingConfig) Subscribes(remote uint16) bool {
	if c.Mode == IncomingOff || slices.Contains(c.IgnorePorts, Port(remote)) {
		return false
	}
	return c.Ports == nil || slices.Contains(c.Ports, Port(remote))
}

// HTTPFilterConfig selects HTTP requests (HTTP/1 and HTTP/2, gRPC
// included). Patterns are case-insensitive regular expressions with
// look-around, as in mirrord.
type HTTPFilterConfig struct {
	// Steal requests with a header that matches, tested on "Name: value" lines, such as
	// "^x-user: alice$" or "^baggage: .*session=42". "(?!...)" look-aheads are supported.
	HeaderFilter string `json:"header_filter,omitempty"`

	// Steal requests whose path matches, tested on the path without and with the query string:
	// "^/api/", ".+user=alice.*".
	PathFilter string `json:"path_filter,omitempty"`

	// Steal requests with this method ("GET", "POST", ...; case-insensitive).
	MethodFilter string `json:"method_filter,omitempty"`

	// Steal requests that match every filter of the list.
	AllOf []HTTPFilterRule `json:"all_of,omitzero"`

	// Steal requests that match at least one filter of the list.
	AnyOf []HTTPFilterRule `json:"any_of,omitzero"`

	// Ports whose traffic is filtered. Defaults to every mirrored or stolen port (mirrord's
	// default is 80 and 8080 only).
	Ports PortList `json:"ports,omitempty"`
}

func (h *HTTPFilterConfig) decodeNode(d *decoder, n *yaml.Node, path string) {
	if isBool(n) {
		if on, _ := d.boolValue(n, path, ""); !on {
			*h = HTTPFilterConfig{}
		}
		return
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "an object")
		return
	}
	d.decodeStruct(n, reflectValue(h), path)
}

// IsSet reports whether a filter is configured.
func (h *HTTPFilterConfig) IsSet() bool {
	return h.HeaderFilter != "" || h.PathFilter != "" || h.MethodFilter != "" || h.AllOf != nil || h.AnyOf != nil
}

// HTTPFilterRule is one filter of all_of or any_of: one of header, path or method.
type HTTPFilterRule struct {
	// A regular expression on "Name: value" header lines.
	Header string `json:"header,omitempty"`
	// A regular expression on the path (without and with the query string).
	Path string `json:"path,omitempty"`
	// An HTTP method.
	Method string `json:"method,omitempty"`
}

// JSONSchemaExtend requires exactly one key.
func (HTTPFilterRule) JSONSchemaExtend(s *jsonschema.Schema) {
	s.OneOf = []*jsonschema.Schema{{Required: []string{"header"}}, {Required: []string{"path"}}, {Required: []string{"method"}}}
}

var httpMethod = regexp.MustCompile(`^[A-Za-z]+$`)

// compileHTTPRegex checks a filter pattern with the engine the agent
// matches with: regexp2 (backtracking, with look-around, like mirrord's
// fancy-regex), case-insensitive.
func compileHTTPRegex(pattern string) error {
	if pattern == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(pattern) > maxPattern {
		return fmt.Errorf("regular expression longer than %d characters", maxPattern)
	}
	if _, err := regexp2.Compile(pattern, regexp2.IgnoreCase); err != nil {
		return fmt.Errorf("invalid regular expression %q: %s", pattern, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return nil
}

func (h *HTTPFilterConfig) validate(d *decoder, path string) {
	var used []string
	check := func(at, pattern string, isRegex bool) {
		if isRegex {
			if err := compileHTTPRegex(pattern); err != nil {
				d.errorf(at, CodeValue, "%v", err)
			}
		} else if !httpMethod.MatchString(pattern) {
			d.errorf(at, CodeValue, "invalid HTTP method %q", pattern)
		}
	}
	for _, f := range []struct {
		key     string
		pattern string
		regex   bool
	}{{"header_filter", h.HeaderFilter, true}, {"path_filter", h.PathFilter, true}, {"method_filter", h.MethodFilter, false}} {
		if f.pattern != "" || d.has(joinKey(path, f.key)) {
			used = append(used, f.key)
			check(joinKey(path, f.key), f.pattern, f.regex)
		}
	}
	// A mirrord body rule is ignored (warned about as an operator feature):
	// in any_of it is left out, which only narrows what is stolen; in
	// all_of, or as the only filter, leaving it out would widen the steal.
	var bodyOnly map[int]bool
	for _, list := range []struct {
		key   string
		rules []HTTPFilterRule
	}{{"all_of", h.AllOf}, {"any_of", h.AnyOf}} {
		if list.rules == nil {
			continue
		}
		used = append(used, list.key)
		at := joinKey(path, list.key)
		if len(list.rules) == 0 {
			d.errorf(at, CodeValue, "must not be empty")
		}
		for i, r := range list.rules {
			rulePath := indexKey(at, i)
			if r.Header == "" && r.Path == "" && r.Method == "" && d.has(joinKey(rulePath, "body")) {
				if list.key == "all_of" {
					d.errorf(joinKey(rulePath, "body"), CodeValue, "a body filter (a mirrord operator feature) can't be applied here, and without it all_of would steal more requests than asked: remove the rule, or match on header, path or method")
				} else {
					if bodyOnly == nil {
						bodyOnly = map[int]bool{}
					}
					bodyOnly[i] = true
				}
				continue
			}
			set := 0
			for _, f := range []struct {
				key, pattern string
				regex        bool
			}{{"header", r.Header, true}, {"path", r.Path, true}, {"method", r.Method, false}} {
				if f.pattern != "" || d.has(joinKey(rulePath, f.key)) {
					set++
					check(joinKey(rulePath, f.key), f.pattern, f.regex)
				}
			}
			if set != 1 {
				d.errorf(rulePath, CodeValue, `needs exactly one of "header", "path" and "method"`)
			}
		}
	}
	if len(bodyOnly) > 0 {
		kept := []HTTPFilterRule{}
		for i, r := range h.AnyOf {
			if !bodyOnly[i] {
				kept = append(kept, r)
			}
		}
		if len(kept) == 0 {
			d.errorf(joinKey(path, "any_of"), CodeValue, "has only body filters (a mirrord operator feature), which can't be applied: match on header, path or method")
		}
		h.AnyOf = kept
	}
	if len(used) == 0 && d.has(joinKey(path, "body_filter")) {
		d.errorf(joinKey(path, "body_filter"), CodeValue, "a body filter (a mirrord operator feature) can't be applied, and without it the steal would take every request: use header_filter, path_filter or method_filter")
	}
	if len(used) > 1 {
		d.errorf(path, CodeConflict, "%s cannot be used together: use one, or combine them with all_of or any_of", joinAnd(used))
	}
}

func (c *IncomingConfig) validate(d *decoder, target TargetPath) {
	const path = "feature.network.incoming"
	filterPath := path + ".http_filter"
	c.HTTPFilter.validate(d, filterPath)
	if c.HTTPFilter.IsSet() && c.Mode != IncomingSteal {
		d.warnf(filterPath, CodeConflict, "is only used in steal mode; mode is %q", c.Mode)
	}
	if c.HTTPFilter.Ports != nil && !c.HTTPFilter.IsSet() {
		d.warnf(filterPath+".ports", CodeConflict, "has no effect without a filter")
	}
	if c.Ports != nil && len(c.IgnorePorts) > 0 {
		d.errorf(path+".ignore_ports", CodeConflict, "ports and ignore_ports cannot be used together")
	}
	checkPairs(d, path+".port_mapping", c.PortMapping, "local", "remote")
	checkPairs(d, path+".listen_ports", c.ListenPorts, "requested", "local")
	for i, m := range c.PortMapping {
		if m[0] == m[1] {
			d.warnf(indexKey(path+".port_mapping", i), CodeValue, "maps port %d to itself; a mapping is only needed when the local port differs", m[0])
		}
	}
	if c.Mode == IncomingSteal && target.Kind == TargetTargetless {
		d.errorf(path+".mode", CodeConflict, "steal needs a target; a targetless run has no traffic to steal")
	}
}

// checkPairs rejects a port that appears twice on the same side.
func checkPairs(d *decoder, path string, pairs []PortPair, first, second string) {
	seen := [2]map[Port]int{{}, {}}
	names := [2]string{first, second}
	for i, p := range pairs {
		for side := range 2 {
			if j, dup := seen[side][p[side]]; dup {
				d.errorf(indexKey(path, i), CodeConflict, "%s port %d is already mapped by entry %d", names[side], p[side], j)
			}
			seen[side][p[side]] = i
		}
	}
}

// joinAnd joins words as "a, b and c".
func joinAnd(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}
