package config

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// Value types shared by several sections: the "one value or a list"
// shorthands of mirrord, ports and ordered regex maps.

// StringList is a list of strings; a single string is a list of one.
type StringList []string

func (l *StringList) decodeNode(d *decoder, n *yaml.Node, path string) {
	*l = decodeStrings(d, n, path, false)
}

// JSONSchema describes the two accepted shapes.
func (StringList) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
		{Type: "string"},
		{Type: "array", Items: &jsonschema.Schema{Type: "string"}},
	}}
}

// NameList is a list of names; a single string is split at ";", as in
// mirrord ("DB_USER;DB_HOST").
type NameList []string

func (l *NameList) decodeNode(d *decoder, n *yaml.Node, path string) {
	*l = decodeStrings(d, n, path, true)
}

// JSONSchema describes the two accepted shapes.
func (NameList) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
		{Type: "string", Description: "names separated by \";\""},
		{Type: "array", Items: &jsonschema.Schema{Type: "string"}},
	}}
}

func decodeStrings(d *decoder, n *yaml.Node, path string, split bool) []string {
	const want = "a string or a list of strings"
	switch {
	case isString(n):
		d.checkTemplate(n, path)
		parts := []string{n.Value}
		if split {
			parts = splitNames(n.Value)
		}
		for i := range parts {
			// Elements of a single string are reported at the string.
			d.display[indexKey(path, i)] = path
			d.values[indexKey(path, i)] = pos{n.Line, n.Column}
		}
		return parts
	case n.Kind == yaml.SequenceNode:
		out := make([]string, 0, len(n.Content))
		for i, item := range n.Content {
			item = d.resolve(item)
			if item == nil {
				continue
			}
			p := indexKey(path, i)
			d.values[p] = pos{item.Line, item.Column}
			if s, ok := d.stringValue(item, p, "a string"); ok {
				out = append(out, s)
			}
		}
		return out
	}
	d.typeError(n, path, want)
	return nil
}

// splitNames splits "A;B; C" into names, dropping empty ones.
func splitNames(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ";") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// Port is a TCP or UDP port number, 1 to 65535.
type Port uint16

func (p *Port) decodeNode(d *decoder, n *yaml.Node, path string) {
	if i, ok := d.intValue(n, path, 1, 65535); ok {
		*p = Port(i)
	}
}

// JSONSchema bounds the port.
func (Port) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "integer", Minimum: "1", Maximum: "65535"}
}

// PortPair is two ports, [local, remote] (or [requested, actual] for
// listen_ports).
type PortPair [2]Port

// PortList is a list of ports; a single number is a list of one.
type PortList []Port

func (l *PortList) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.ScalarNode {
		var p Port
		p.decodeNode(d, n, path)
		if p != 0 {
			*l = PortList{p}
		}
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.typeError(n, path, "a port or a list of ports")
		return
	}
	out := make(PortList, 0, len(n.Content))
	for i, item := range n.Content {
		var p Port
		d.decodeElem(item, reflectValue(&p), indexKey(path, i))
		if p != 0 {
			out = append(out, p)
		}
	}
	*l = out
}

// JSONSchema describes the two accepted shapes.
func (PortList) JSONSchema() *jsonschema.Schema {
	port := Port(0).JSONSchema()
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
		port,
		{Type: "array", Items: Port(0).JSONSchema()},
	}}
}

// RegexMapping is one entry of a RegexMap.
type RegexMapping struct {
	Pattern     string
	Replacement string
}

// RegexMap maps regular expressions to replacements. It is an object in
// the file; the order of its entries is kept, because the first matching
// pattern wins (mirrord leaves the order undefined).
type RegexMap []RegexMapping

func (m *RegexMap) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "an object mapping patterns to replacements")
		return
	}
	var out RegexMap
	seen := map[string]bool{}
	for _, e := range d.entries(n, path, 0) {
		child := joinKey(path, e.name)
		if seen[e.name] {
			d.errorAt(e.key, child, CodeValue, "duplicate key")
			continue
		}
		seen[e.name] = true
		v := d.resolve(e.value)
		if v == nil {
			continue
		}
		// Patterns are reported at their key, which is what is wrong when
		// the regular expression does not compile.
		d.values[child] = pos{e.key.Line, e.key.Column}
		if s, ok := d.stringValue(v, child, "a string"); ok {
			out = append(out, RegexMapping{Pattern: e.name, Replacement: s})
		}
	}
	*m = out
}

// MarshalJSON writes an object in the entries' order.
func (m RegexMap) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range m {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(e.Pattern)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(e.Replacement)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// JSONSchema describes an object of strings.
func (RegexMap) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "object", AdditionalProperties: &jsonschema.Schema{Type: "string"}}
}

// EnvValues maps variable names to values. Any scalar is accepted as a
// value, so that YAML's PORT: 8080 means "8080".
type EnvValues map[string]string

func (m *EnvValues) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "an object")
		return
	}
	out := EnvValues{}
	for _, e := range d.entries(n, path, 0) {
		child := joinKey(path, e.name)
		if _, dup := out[e.name]; dup {
			d.errorAt(e.key, child, CodeValue, "duplicate key")
			continue
		}
		v := d.resolve(e.value)
		if v == nil {
			continue
		}
		d.values[child] = pos{v.Line, v.Column}
		if s, ok := d.scalarText(v, child, "a string"); ok {
			out[e.name] = s
		}
	}
	*m = out
}

// JSONSchema describes an object of scalars.
func (EnvValues) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "object", AdditionalProperties: &jsonschema.Schema{
		Description: "numbers and booleans are taken as their text",
		OneOf:       []*jsonschema.Schema{{Type: "string"}, {Type: "number"}, {Type: "boolean"}},
	}}
}

// Seconds is a duration in whole seconds, as mirrord writes them.
type Seconds uint32

// JSONSchema bounds the value.
func (Seconds) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "integer", Minimum: "0", Maximum: json.Number(strconv.Itoa(1<<32 - 1))}
}

// enumSchema is the schema of a string enum.
func enumSchema(values []string) *jsonschema.Schema {
	s := &jsonschema.Schema{Type: "string"}
	for _, v := range values {
		s.Enum = append(s.Enum, v)
	}
	return s
}
