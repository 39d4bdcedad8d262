package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// The decoder walks a yaml.Node tree into the Go config types by
// reflection, keeping the position of every key and value. YAML is a
// superset of JSON, so one walker serves .json and .yaml files and gives
// lines and columns for both. encoding/json and yaml.v3's KnownFields stop
// at the first error and do not know our shorthands (a bool or a string in
// place of an object), hence our own walker.

// nodeDecoder is implemented by types that accept more than one shape
// (the shorthands) or need range checks.
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node, path string)
}

// enumType is implemented by string types with a fixed set of values.
type enumType interface {
	enumValues() []string
}

// maxNodes bounds the work for one file: aliases can make a small file
// expand to an exponential number of nodes ("billion laughs").
const maxNodes = 200_000

// decoder collects every error instead of stopping at the first: an
// editor shows them all.
type decoder struct {
	file  string
	errs  ErrorList
	warns ErrorList
	// values are the positions of the value at each key path; validation,
	// which runs after decoding, reports there.
	values map[string]pos
	// display maps the path of an element that came from a single-string
	// shorthand ("exclude": "A;B" gives exclude[0], exclude[1]) to the
	// path the user wrote.
	display map[string]string
	// overridden are the key paths the command line set (Apply): what is
	// reported there has no place in the file.
	overridden map[string]bool
	nodes      int
	tooBig     bool
}

func newDecoder(file string) *decoder {
	return &decoder{
		file:    file,
		values:  map[string]pos{},
		display: map[string]string{},
	}
}

// resolve follows aliases and charges the node budget.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for hops := 0; n != nil && n.Kind == yaml.AliasNode; hops++ {
		if hops > 100 {
			return nil
		}
		n = n.Alias
	}
	if n == nil {
		return nil
	}
	d.nodes++
	if d.nodes > maxNodes {
		if !d.tooBig {
			d.tooBig = true
			d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Column: n.Column, Code: CodeValue,
				Message: fmt.Sprintf("the document is too large (more than %d values after expanding aliases)", maxNodes)})
		}
		return nil
	}
	return n
}

// decode decodes n into v, which must be addressable.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = d.resolve(n)
	if n == nil {
		return
	}
	d.values[path] = pos{n.Line, n.Column}
	if isNull(n) {
		// null means "not set": the default stays, as in mirrord.
		return
	}
	if v.CanAddr() {
		if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
			nd.decodeNode(d, n, path)
			return
		}
	}
	d.decodeValue(n, v, path)
}

// decodeElem decodes an element of a list or a value of a map, where null
// does not mean "the default" (there is none) and is an error.
func (d *decoder) decodeElem(n *yaml.Node, v reflect.Value, path string) {
	if r := d.resolve(n); r != nil && isNull(r) {
		d.values[path] = pos{r.Line, r.Column}
		d.typeError(r, path, wantFor(v.Type()))
		return
	}
	d.decode(n, v, path)
}

// wantFor names what a Go type expects, for messages.
func wantFor(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Slice:
		return "a list"
	case reflect.Array:
		return fmt.Sprintf("a list of %d values", t.Len())
	}
	return "an object"
}

// decodeValue decodes by kind, ignoring any nodeDecoder of v itself (so a
// nodeDecoder can call it for its object form).
func (d *decoder) decodeValue(n *yaml.Node, v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Bool:
		if b, ok := d.boolValue(n, path, "a boolean"); ok {
			v.SetBool(b)
		}
	case reflect.String:
		s, ok := d.stringValue(n, path, "a string")
		if !ok {
			return
		}
		if v.CanAddr() {
			if e, ok := v.Addr().Interface().(enumType); ok && !d.checkEnum(n, path, s, e.enumValues()) {
				return
			}
		}
		v.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := v.Type().Bits()
		if i, ok := d.intValue(n, path, -1<<(bits-1), 1<<(bits-1)-1); ok {
			v.SetInt(i)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		limit := int64(math.MaxInt64)
		if bits := v.Type().Bits(); bits < 64 {
			limit = 1<<bits - 1
		}
		if i, ok := d.intValue(n, path, 0, limit); ok {
			v.SetUint(uint64(i))
		}
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Array:
		d.decodeArray(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	default:
		// Only reachable when a config type gains a field of a kind the
		// walker does not know: a programming error, reported, not panicked.
		d.errorAt(n, path, CodeType, "cannot decode a value of Go type %s", v.Type())
	}
}

type entry struct {
	key, value *yaml.Node
	name       string
}

// entries returns the entries of a mapping, with YAML merge keys ("<<")
// expanded: explicit keys win over merged ones.
func (d *decoder) entries(n *yaml.Node, path string, depth int) []entry {
	var explicit, merged []entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.resolve(n.Content[i])
		if k == nil {
			return nil
		}
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merged = append(merged, d.mergeEntries(n.Content[i+1], path, depth)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorAt(k, path, CodeType, "keys must be strings, got %s", describe(k))
			continue
		}
		explicit = append(explicit, entry{key: k, value: n.Content[i+1], name: k.Value})
	}
	if len(merged) == 0 {
		return explicit
	}
	seen := map[string]bool{}
	for _, e := range explicit {
		seen[e.name] = true
	}
	out := explicit
	for _, e := range merged {
		if !seen[e.name] {
			seen[e.name] = true
			out = append(out, e)
		}
	}
	return out
}

func (d *decoder) mergeEntries(v *yaml.Node, path string, depth int) []entry {
	if depth > 20 {
		d.errorAt(v, path, CodeValue, "merge keys (<<) nested too deeply")
		return nil
	}
	v = d.resolve(v)
	if v == nil {
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		return d.entries(v, path, depth+1)
	case yaml.SequenceNode:
		var out []entry
		for _, item := range v.Content {
			out = append(out, d.mergeEntries(item, path, depth+1)...)
		}
		return out
	}
	d.errorAt(v, path, CodeType, "a merge key (<<) needs an object or a list of objects, got %s", describe(v))
	return nil
}

// structFields maps the JSON names of a struct type's fields to their index.
type structFields struct {
	index map[string][]int
	names []string
}

var fieldCache sync.Map // reflect.Type -> *structFields

func fieldsOf(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	sf := &structFields{index: map[string][]int{}}
	for i := range t.NumField() {
		f := t.Field(i)
		name := jsonName(f)
		if name == "" {
			continue
		}
		sf.index[name] = f.Index
		sf.names = append(sf.names, name)
	}
	fieldCache.Store(t, sf)
	return sf
}

// jsonName is the key of a struct field, "" when it has none.
func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "an object")
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]bool{}
	for _, e := range d.entries(n, path, 0) {
		child := joinKey(path, e.name)
		if seen[e.name] {
			d.errorAt(e.key, child, CodeValue, "duplicate key")
			continue
		}
		seen[e.name] = true
		idx, ok := fields.index[e.name]
		if !ok {
			d.unknownKey(e.key, path, e.name, fields.names)
			continue
		}
		d.decode(e.value, v.FieldByIndex(idx), child)
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.typeError(n, path, "a list")
		return
	}
	out := reflect.MakeSlice(v.Type(), 0, len(n.Content))
	for i, item := range n.Content {
		elem := reflect.New(v.Type().Elem()).Elem()
		errs := len(d.errs)
		d.decodeElem(item, elem, indexKey(path, i))
		// A bad element is reported once; keeping its zero value would
		// make validation report it again, differently.
		if len(d.errs) == errs {
			out = reflect.Append(out, elem)
		}
	}
	v.Set(out)
}

func (d *decoder) decodeArray(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.typeError(n, path, fmt.Sprintf("a list of %d values", v.Len()))
		return
	}
	if len(n.Content) != v.Len() {
		d.errorAt(n, path, CodeType, "expected a list of %d values, got %d", v.Len(), len(n.Content))
		return
	}
	for i, item := range n.Content {
		d.decodeElem(item, v.Index(i), indexKey(path, i))
	}
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "an object")
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		d.errorAt(n, path, CodeType, "cannot decode a map with keys of Go type %s", v.Type().Key())
		return
	}
	out := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for _, e := range d.entries(n, path, 0) {
		child := joinKey(path, e.name)
		key := reflect.New(v.Type().Key()).Elem()
		key.SetString(e.name)
		if out.MapIndex(key).IsValid() {
			d.errorAt(e.key, child, CodeValue, "duplicate key")
			continue
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		errs := len(d.errs)
		d.decodeElem(e.value, elem, child)
		if len(d.errs) == errs {
			out.SetMapIndex(key, elem)
		}
	}
	v.Set(out)
}

// Scalars.

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func isString(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!str"
}

func isBool(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!bool"
}

func (d *decoder) boolValue(n *yaml.Node, path, want string) (bool, bool) {
	if !isBool(n) {
		d.typeError(n, path, want)
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		d.typeError(n, path, want)
		return false, false
	}
	return b, true
}

func (d *decoder) stringValue(n *yaml.Node, path, want string) (string, bool) {
	if !isString(n) {
		d.typeError(n, path, want)
		return "", false
	}
	d.checkTemplate(n, path)
	return n.Value, true
}

// checkTemplate warns about mirrord's Tera templates ("{{ get_env(...) }}"),
// which doppel does not render: the text is used as it is.
func (d *decoder) checkTemplate(n *yaml.Node, path string) {
	if i := strings.Index(n.Value, "{{"); i >= 0 && strings.Contains(n.Value[i:], "}}") {
		d.warnAt(n, path, CodeIgnored, "mirrord templates ({{ ... }}) are not rendered by doppel; the text is used as written")
	}
}

// scalarText accepts any non-null scalar as text: environment values and
// quantities are strings, but YAML users write PORT: 8080.
func (d *decoder) scalarText(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.typeError(n, path, want)
		return "", false
	}
	return n.Value, true
}

func (d *decoder) intValue(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	want := "an integer"
	if lo == 0 {
		want = "a non-negative integer"
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.typeError(n, path, want)
		return 0, false
	}
	var i int64
	if err := n.Decode(&i); err != nil {
		d.errorAt(n, path, CodeValue, "%s is out of range (%d to %d)", n.Value, lo, hi)
		return 0, false
	}
	if i < lo || i > hi {
		d.errorAt(n, path, CodeValue, "%s is out of range (%d to %d)", n.Value, lo, hi)
		return 0, false
	}
	return i, true
}

func (d *decoder) checkEnum(n *yaml.Node, path, s string, allowed []string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	d.errorAt(n, path, CodeValue, "%s", enumMessage(s, allowed))
	return false
}

func enumMessage(s string, allowed []string) string {
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	msg := fmt.Sprintf("invalid value %q: must be one of %s", s, strings.Join(quoted, ", "))
	if best := suggest(s, allowed); best != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", best)
	}
	return msg
}

// Errors.

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "an object"
	case yaml.SequenceNode:
		return "a list"
	case yaml.DocumentNode:
		return "a document"
	case yaml.AliasNode:
		return "an alias"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	switch n.Tag {
	case "!!str":
		return "string " + strconv.Quote(v)
	case "!!bool":
		return "boolean " + v
	case "!!int":
		return "integer " + v
	case "!!float":
		return "number " + v
	case "!!null":
		return "null"
	case "!!timestamp":
		return "timestamp " + v
	case "!!binary":
		return "binary data"
	}
	return fmt.Sprintf("%s value %q", n.Tag, v)
}

func (d *decoder) typeError(n *yaml.Node, path, want string) {
	d.errorAt(n, path, CodeType, "expected %s, got %s", want, describe(n))
}

func (d *decoder) errorAt(n *yaml.Node, path string, code Code, format string, args ...any) {
	d.errs = append(d.errs, &Error{
		File: d.file, Line: n.Line, Column: n.Column,
		KeyPath: d.displayPath(path), Message: fmt.Sprintf(format, args...), Code: code,
	})
}

func (d *decoder) warnAt(n *yaml.Node, path string, code Code, format string, args ...any) {
	d.warns = append(d.warns, &Error{
		File: d.file, Line: n.Line, Column: n.Column, Severity: SeverityWarning,
		KeyPath: d.displayPath(path), Message: fmt.Sprintf(format, args...), Code: code,
	})
}

// errorf reports at a key path after decoding; the position is the value's
// (or, for settings not in the file, the nearest enclosing key's).
func (d *decoder) errorf(path string, code Code, format string, args ...any) {
	d.errs = append(d.errs, d.located(path, code, SeverityError, fmt.Sprintf(format, args...)))
}

func (d *decoder) warnf(path string, code Code, format string, args ...any) {
	d.warns = append(d.warns, d.located(path, code, SeverityWarning, fmt.Sprintf(format, args...)))
}

func (d *decoder) located(path string, code Code, sev Severity, msg string) *Error {
	e := &Error{File: d.file, KeyPath: d.displayPath(path), Message: msg, Code: code, Severity: sev}
	if changedPath(d.overridden, path) {
		e.File = ""
		e.Message += " (set on the command line)"
		return e
	}
	for p := path; p != ""; p = parentKey(p) {
		if at, ok := d.values[p]; ok {
			e.Line, e.Column = at.line, at.col
			break
		}
	}
	return e
}

// has reports whether the file set the key.
func (d *decoder) has(path string) bool {
	_, ok := d.values[path]
	return ok
}

func (d *decoder) displayPath(path string) string {
	if p, ok := d.display[path]; ok {
		return p
	}
	return path
}

func (d *decoder) unknownKey(k *yaml.Node, parent, key string, candidates []string) {
	full := joinKey(parent, key)
	if why, ok := ignoredMirrordKey(full); ok {
		d.warnAt(k, full, CodeIgnored, "mirrord setting not supported by doppel, ignored (%s)", why)
		d.values[full] = pos{k.Line, k.Column} // seen: a check may depend on what was ignored
		return
	}
	e := &Error{File: d.file, Line: k.Line, Column: k.Column, KeyPath: full, Code: CodeUnknownKey}
	if best := suggest(key, candidates); best != "" {
		e.Message = fmt.Sprintf("(did you mean %q?)", best)
	} else if elsewhere := knownElsewhere(key); elsewhere != "" {
		e.Message = fmt.Sprintf("(did you mean %s?)", elsewhere)
	} else if len(candidates) > 0 {
		sorted := append([]string(nil), candidates...)
		sort.Strings(sorted)
		e.Message = fmt.Sprintf("(known keys here: %s)", strings.Join(sorted, ", "))
	}
	d.errs = append(d.errs, e)
}

// reflectValue is the addressable value behind a pointer.
func reflectValue(p any) reflect.Value {
	return reflect.ValueOf(p).Elem()
}
