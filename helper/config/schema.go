package config

import (
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/invopop/jsonschema"
)

// SchemaID is the $id of the generated JSON schema.
const SchemaID = "https://github.com/doppel-dev/doppel/schema/doppel.schema.json"

const packagePath = "github.com/doppel-dev/doppel/helper/config"

// schemaDefaulter gives the default of a shorthand type in its short form
// ("env": true rather than "env": {}).
type schemaDefaulter interface {
	schemaDefault() any
}

func (EnvConfig) schemaDefault() any      { return true }
func (FSConfig) schemaDefault() any       { return FSRead }
func (NetworkConfig) schemaDefault() any  { return true }
func (IncomingConfig) schemaDefault() any { return IncomingMirror }
func (OutgoingConfig) schemaDefault() any { return true }
func (DNSConfig) schemaDefault() any      { return true }

// GenerateSchema returns the JSON schema of configuration files, generated
// from the Go types: the doc comments of the types and fields, read from
// the source in sourceDir (this package's directory), become descriptions;
// the defaults are Default()'s values. mirrord settings doppel ignores are
// listed as deprecated, so that editors accept existing mirrord files.
func GenerateSchema(sourceDir string) ([]byte, error) {
	comments, err := typeComments(sourceDir)
	if err != nil {
		return nil, err
	}
	r := &jsonschema.Reflector{
		RequiredFromJSONSchemaTags: true,
		ExpandedStruct:             true,
		CommentMap:                 comments,
	}
	s := r.Reflect(&Config{})
	s.ID = SchemaID
	s.Title = "doppel configuration"
	defs := s.Definitions
	setDefaults(s, defs, reflect.TypeFor[Config](), reflect.ValueOf(defaults()).Elem(), map[reflect.Type]bool{})
	if err := addIgnoredKeys(s, defs); err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// typeComments reads the doc comments with jsonschema.AddGoComments, which
// keys them by the import path joined with the directory as given; they
// are re-keyed by the real import path so that any sourceDir works.
func typeComments(sourceDir string) (map[string]string, error) {
	tmp := &jsonschema.Reflector{}
	if err := tmp.AddGoComments(packagePath, sourceDir, jsonschema.WithFullComment()); err != nil {
		return nil, fmt.Errorf("reading the doc comments in %s: %w", sourceDir, err)
	}
	prefix := path.Join(packagePath, filepath.ToSlash(filepath.Clean(sourceDir)))
	out := map[string]string{}
	for k, v := range tmp.CommentMap {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok || strings.Contains(rest, "/") {
			continue
		}
		if !strings.Contains(rest, ".") {
			v = userFacing(rest, v)
		}
		out[packagePath+"."+rest] = strings.Join(strings.Fields(v), " ")
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no doc comments found in %s: is it the helper/config directory?", sourceDir)
	}
	return out, nil
}

// userFacing drops the Go type name that starts a type's doc comment:
// "EnvConfig chooses the environment" becomes "Chooses the environment".
func userFacing(typeName, doc string) string {
	rest, ok := strings.CutPrefix(doc, typeName+" ")
	if !ok {
		return doc
	}
	for _, verb := range []string{"is ", "are "} {
		if r, ok := strings.CutPrefix(rest, verb); ok {
			rest = r
			break
		}
	}
	first, size := utf8.DecodeRuneInString(rest)
	return string(unicode.ToUpper(first)) + rest[size:]
}

// objectSchema finds the object form of a (possibly shorthand) schema.
func objectSchema(s *jsonschema.Schema, defs jsonschema.Definitions) *jsonschema.Schema {
	for depth := 0; s != nil && depth < 8; depth++ {
		if s.Ref != "" {
			s = defs[strings.TrimPrefix(s.Ref, "#/$defs/")]
			continue
		}
		if s.Properties != nil {
			return s
		}
		if s.Items != nil {
			s = s.Items
			continue
		}
		var next *jsonschema.Schema
		for _, alt := range s.OneOf {
			if objectSchema(alt, defs) != nil {
				next = alt
				break
			}
		}
		s = next
	}
	return nil
}

// setDefaults writes the default of every field whose default is not an
// object of its own (those carry their fields' defaults).
func setDefaults(s *jsonschema.Schema, defs jsonschema.Definitions, t reflect.Type, v reflect.Value, seen map[reflect.Type]bool) {
	obj := objectSchema(s, defs)
	if obj == nil || seen[t] {
		return
	}
	seen[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		name := jsonName(f)
		prop, ok := obj.Properties.Get(name)
		if name == "" || !ok {
			continue
		}
		fv := v.Field(i)
		if d, ok := fv.Interface().(schemaDefaulter); ok {
			prop.Default = d.schemaDefault()
		} else if f.Type.Kind() != reflect.Struct && (!fv.IsZero() || f.Type.Kind() == reflect.Bool) {
			prop.Default = jsonValue(fv.Interface())
		}
		if f.Type.Kind() == reflect.Struct {
			setDefaults(prop, defs, f.Type, fv, seen)
		}
	}
}

func jsonValue(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}

// addIgnoredKeys lists mirrord's settings that doppel ignores.
func addIgnoredKeys(root *jsonschema.Schema, defs jsonschema.Definitions) error {
	keys := make([]string, 0, len(mirrordOnlyKeys))
	for k := range mirrordOnlyKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		segments := strings.Split(key, ".")
		obj := objectSchema(root, defs)
		for _, seg := range segments[:len(segments)-1] {
			prop, ok := obj.Properties.Get(seg)
			if !ok {
				return fmt.Errorf("ignored mirrord key %s: no %q in the schema", key, seg)
			}
			if obj = objectSchema(prop, defs); obj == nil {
				return fmt.Errorf("ignored mirrord key %s: %q is not an object", key, seg)
			}
		}
		obj.Properties.Set(segments[len(segments)-1], &jsonschema.Schema{
			Description: "A mirrord setting that doppel ignores: " + mirrordOnlyKeys[key] + ".",
			Deprecated:  true,
		})
	}
	return nil
}
