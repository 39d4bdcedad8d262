package httpfilter

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule Rule
		want string
	}{
		{"empty", Rule{}, "filter: needs exactly one of header, path, method, all_of and any_of (has none)"},
		{"two", Rule{Header: "a", Path: "b"}, "(has header, path)"},
		{"bad regex", Rule{Path: "(unclosed"}, `path: invalid regular expression "(unclosed"`},
		{"bad method", Rule{Method: "GET /"}, `method: invalid HTTP method "GET /"`},
		{"empty list", Rule{AllOf: []Rule{}}, "all_of: must not be empty"},
		{"nested error", Rule{AnyOf: []Rule{{Method: "GET"}, {AllOf: []Rule{{Header: "[z-a]"}}}}}, "any_of[1].all_of[0].header: invalid regular expression"},
		{"long", Rule{Header: strings.Repeat("a", maxPattern+1)}, "longer than 4096"},
		{"deep", deepRule(maxDepth + 2), "nested more than 16 deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.rule)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile(%+v) = %v, want an error with %q", tc.rule, err, tc.want)
			}
		})
	}
}

func deepRule(n int) Rule {
	r := Rule{Method: "GET"}
	for range n {
		r = Rule{AllOf: []Rule{r}}
	}
	return r
}

func TestRuleJSON(t *testing.T) {
	const wire = `{"any_of":[{"header":"^x-user: alice$"},{"all_of":[{"method":"post"},{"path":"^/api/"}]}]}`
	var r Rule
	if err := json.Unmarshal([]byte(wire), &r); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != wire {
		t.Fatalf("round trip:\n got %s\nwant %s", out, wire)
	}
	if _, err := Compile(r); err != nil {
		t.Fatal(err)
	}
	var empty Rule
	if err := json.Unmarshal([]byte(`{"all_of":[]}`), &empty); err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(empty); err == nil {
		t.Fatal("an empty all_of from the wire compiled")
	}
}
