package config

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

const committedSchema = "../../schema/doppel.schema.json"

// TestSchemaIsUpToDate fails when schema/doppel.schema.json no longer
// matches the Go types (fields, doc comments, defaults).
func TestSchemaIsUpToDate(t *testing.T) {
	generated, err := GenerateSchema(".")
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(committedSchema)
	if err != nil {
		t.Fatalf("%v: run `make schema` (go run ./schema/gen) at the repository root", err)
	}
	if !bytes.Equal(generated, committed) {
		t.Fatalf("schema/doppel.schema.json is stale: run `make schema` (go run ./schema/gen) at the repository root and commit the result")
	}
}

func TestSchemaDescribesEveryKey(t *testing.T) {
	data, err := GenerateSchema(".")
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	// Every property has a description, from a doc comment.
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if props, ok := v["properties"].(map[string]any); ok {
				for name, p := range props {
					if pm, ok := p.(map[string]any); ok && pm["description"] == nil {
						t.Errorf("%s.%s has no description", path, name)
					}
				}
			}
			for k, child := range v {
				walk(path+"/"+k, child)
			}
		case []any:
			for _, child := range v {
				walk(path, child)
			}
		}
	}
	walk("", s)
}

// TestSchemaAgreesWithParser validates the testdata against the schema: the
// files Parse accepts must be valid for editors too, and typos must not.
func TestSchemaAgreesWithParser(t *testing.T) {
	data, err := GenerateSchema(".")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	compiler := jsonschema.NewCompiler()
	if err := compiler.AddResource(SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	schema, err := compiler.Compile(SchemaID)
	if err != nil {
		t.Fatal(err)
	}
	validate := func(name string, text []byte) error {
		var v any
		if err := yaml.Unmarshal(text, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v == nil {
			v = map[string]any{}
		}
		// Through JSON, so that YAML's types become JSON's.
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return schema.Validate(inst)
	}

	files, _ := filepath.Glob("testdata/examples/*")
	mirrord, _ := filepath.Glob("testdata/mirrord/*")
	for _, f := range append(files, mirrord...) {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(f, text); err != nil {
			t.Errorf("%s is invalid for the schema: %v", f, err)
		}
	}
	// And the canonical encoding of what Parse returns.
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(f+" (encoded)", []byte(toJSON(t, c))); err != nil {
			t.Errorf("%s (encoded) is invalid for the schema: %v", f, err)
		}
	}
	for _, text := range []string{
		"feature: {network: {outgoin: true}}",
		"feature: {fs: readonly}",
		"feature: {network: {incoming: {mode: stael}}}",
		"target: deploy/x",
		"agent: {ttl: -1}",
		"feature: {network: {outgoing: {filter: {remote: [a], local: [b]}}}}",
		"feature: {env: [A]}",
	} {
		if err := validate(text, []byte(text)); err == nil {
			t.Errorf("%s: valid for the schema", text)
		}
		if _, err := Parse([]byte(text), ""); err == nil {
			t.Errorf("%s: accepted by Parse", text)
		}
	}
}

func TestSchemaDescriptionsAreUserFacing(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"Config", "Config is a doppel configuration.", "A doppel configuration."},
		{"EnvConfig", "EnvConfig chooses the environment.", "Chooses the environment."},
		{"Port", "A port.", "A port."},
	} {
		if got := userFacing(tc.name, tc.doc); got != tc.want {
			t.Errorf("userFacing(%q) = %q", tc.doc, got)
		}
	}
	if _, err := GenerateSchema(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no doc comments") {
		t.Errorf("an empty source directory: %v", err)
	}
}
