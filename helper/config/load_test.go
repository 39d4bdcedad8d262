package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected messages in testdata/errors/*.want")

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Parse([]byte(text), "test.yaml")
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	return c
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMirrordConfigLoadsUnchanged(t *testing.T) {
	c, err := Load("testdata/mirrord/backend.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Target.Path; got != (TargetPath{Kind: TargetDeployment, Name: "backend"}) {
		t.Errorf("target path = %+v", got)
	}
	if c.Target.Namespace != "staging" {
		t.Errorf("namespace = %q", c.Target.Namespace)
	}
	in := c.Feature.Network.Incoming
	if in.Mode != IncomingSteal || in.HTTPFilter.PathFilter != ".+user=alice.*" {
		t.Errorf("incoming = %+v", in)
	}
	out := c.Feature.Network.Outgoing
	if !out.TCP || !out.UDP {
		t.Errorf("outgoing = %+v", out)
	}
	if c.Feature.FS.Mode != FSRead || !c.Feature.Env.Enabled {
		t.Errorf("fs = %q, env = %v", c.Feature.FS.Mode, c.Feature.Env.Enabled)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %v", ErrorList(c.Warnings))
	}
}

func TestMirrordCompleteExampleWarnsAboutIgnoredSettings(t *testing.T) {
	c, err := Load("testdata/mirrord/complete.json")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"accept_invalid_certificates": true, "connect_tcp": true, "agent.log_level": true, "agent.json_log": true,
		"agent.flush_connections": true, "agent.metrics": true, "operator": true,
		"sip_binaries": true, "telemetry": true,
		"feature.network.incoming.http_filter.header_filter": true, // a {{ key }} template
		"feature.network.dns.filter.local[0]":                true, // an IP entry
		"feature.network.dns.filter.local[1]":                true,
	}
	got := map[string]bool{}
	for _, w := range c.Warnings {
		got[w.KeyPath] = true
		if w.Severity != SeverityWarning || w.Line == 0 {
			t.Errorf("warning without position or severity: %v", w)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings at %v, want %v", got, want)
	}
	if c.Agent.StartupTimeout != 360 || c.Agent.TTL != 30 || c.Agent.ImagePullSecrets[0].Name != "secret" {
		t.Errorf("agent = %+v", c.Agent)
	}
	if got := c.Feature.Env.Include; !reflect.DeepEqual(got, NameList{"DATABASE_USER", "PUBLIC_ENV"}) {
		t.Errorf("include = %q", got)
	}
	if got := c.Feature.FS.ReadWrite; !reflect.DeepEqual(got, StringList{`.+\.json`}) {
		t.Errorf("read_write = %q", got)
	}
	if got := c.Feature.Network.Incoming.PortMapping; !reflect.DeepEqual(got, []PortPair{{7777, 8888}}) {
		t.Errorf("port_mapping = %v", got)
	}
}

func TestExamplesParse(t *testing.T) {
	files, _ := filepath.Glob("testdata/examples/*")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(c.Warnings) > 0 {
			t.Errorf("%s: unexpected warnings:\n%v", f, ErrorList(c.Warnings))
		}
	}
}

func TestShorthands(t *testing.T) {
	c := mustParse(t, "target: pod/a/container/b\nfeature:\n  env: false\n  fs: write\n  network:\n    incoming: steal\n    outgoing: false\n    dns: false\n")
	if c.Target.Path != (TargetPath{Kind: TargetPod, Name: "a", Container: "b"}) {
		t.Errorf("target = %+v", c.Target.Path)
	}
	f := c.Feature
	if f.Env.Enabled || f.FS.Mode != FSWrite || f.Network.Incoming.Mode != IncomingSteal ||
		f.Network.Outgoing.TCP || f.Network.Outgoing.UDP || f.Network.DNS.Enabled {
		t.Errorf("feature = %+v", f)
	}

	for _, tc := range []struct {
		text  string
		check func(*Config) bool
	}{
		{"feature: {fs: true}", func(c *Config) bool { return c.Feature.FS.Mode == FSRead }},
		{"feature: {fs: false}", func(c *Config) bool { return c.Feature.FS.Mode == FSLocal }},
		{"feature: {network: {incoming: false}}", func(c *Config) bool { return c.Feature.Network.Incoming.Mode == IncomingOff }},
		{"feature: {network: {incoming: true}}", func(c *Config) bool { return c.Feature.Network.Incoming.Mode == IncomingMirror }},
		{"feature: {network: {incoming: null}}", func(c *Config) bool { return c.Feature.Network.Incoming.Mode == IncomingMirror }},
		{"feature: {network: false}", func(c *Config) bool {
			n := c.Feature.Network
			return n.Incoming.Mode == IncomingOff && !n.Outgoing.TCP && !n.Outgoing.UDP && !n.DNS.Enabled
		}},
		{"feature: {network: true}", func(c *Config) bool { return c.Feature.Network.Outgoing.TCP }},
		{"feature: {env: {exclude: A;B}}", func(c *Config) bool {
			return c.Feature.Env.Enabled && reflect.DeepEqual(c.Feature.Env.Exclude, NameList{"A", "B"})
		}},
		{"feature: {fs: {read_only: '^/a;b$'}}", func(c *Config) bool {
			return reflect.DeepEqual(c.Feature.FS.ReadOnly, StringList{"^/a;b$"}) // regexes are not split
		}},
		{"target: {path: {deployment: api, container: app}, namespace: ns}", func(c *Config) bool {
			return c.Target.Path == TargetPath{Kind: TargetDeployment, Name: "api", Container: "app"} && c.Target.Namespace == "ns"
		}},
		{"target: targetless", func(c *Config) bool { return c.Target.Path.Kind == TargetTargetless }},
		{"target: {namespace: ns}", func(c *Config) bool { return c.Target.Path.IsZero() && c.Target.Namespace == "ns" }},
		{"feature: {network: {incoming: {mode: steal, http_filter: {ports: 8000, header_filter: x}}}}", func(c *Config) bool {
			return reflect.DeepEqual(c.Feature.Network.Incoming.HTTPFilter.Ports, PortList{8000})
		}},
		{"feature: {network: {incoming: {http_filter: false}}}", func(c *Config) bool { return !c.Feature.Network.Incoming.HTTPFilter.IsSet() }},
		{"feature: {network: {outgoing: {filter: {local: db.internal}}}}", func(c *Config) bool {
			return reflect.DeepEqual(c.Feature.Network.Outgoing.Filter.Local, StringList{"db.internal"})
		}},
		{"skip_processes: bash", func(c *Config) bool { return reflect.DeepEqual(c.SkipProcesses, NameList{"bash"}) }},
		{"agent: {tolerations: []}", func(c *Config) bool { return c.Agent.Tolerations != nil && len(c.Agent.Tolerations) == 0 }},
		{"feature: {env: {override: {PORT: 8080, DEBUG: true}}}", func(c *Config) bool {
			return c.Feature.Env.Override["PORT"] == "8080" && c.Feature.Env.Override["DEBUG"] == "true"
		}},
	} {
		if c := mustParse(t, tc.text); !tc.check(c) {
			t.Errorf("%s: got %s", tc.text, toJSON(t, c))
		}
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	want := toJSON(t, Default())
	for _, text := range []string{"", "# nothing\n", "{}", "---\n", "feature: null\n"} {
		if got := toJSON(t, mustParse(t, text)); got != want {
			t.Errorf("%q:\n got %s\nwant %s", text, got, want)
		}
	}
}

// TestErrorMessages checks the full text, with lines and columns, of the
// errors of each file in testdata/errors against the .want file beside it.
func TestErrorMessages(t *testing.T) {
	files, _ := filepath.Glob("testdata/errors/*")
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, ".want") {
			continue
		}
		n++
		_, err := Load(f)
		if err == nil {
			t.Errorf("%s: no error", f)
			continue
		}
		got := err.Error() + "\n"
		wantFile := f + ".want"
		if *update {
			if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(wantFile)
		if err != nil {
			t.Fatalf("%v (run go test -run TestErrorMessages -update and review the result)", err)
		}
		if got != string(want) {
			t.Errorf("%s:\n got:\n%s\nwant:\n%s", f, got, want)
		}
	}
	if n < 8 {
		t.Errorf("only %d error cases", n)
	}
}

func TestErrorsAreTyped(t *testing.T) {
	_, err := Load("testdata/errors/unknown-key.yaml")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%T is not an *Error", err)
	}
	if e.File != "testdata/errors/unknown-key.yaml" || e.Line != 12 || e.Column != 5 ||
		e.KeyPath != "feature.network.outgoin" || e.Code != CodeUnknownKey || e.Category() != "config" {
		t.Errorf("error = %#v", e)
	}
	var cat interface{ Category() string }
	if !errors.As(err, &cat) || cat.Category() != Category {
		t.Errorf("no category on %T", err)
	}

	_, err = Load("testdata/does-not-exist.json")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v is not fs.ErrNotExist", err)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		err  Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Column: 5, KeyPath: "agent.ttl", Message: "bad"}, "a.yaml:3:5: agent.ttl: bad"},
		{Error{File: "a.yaml", Line: 3, KeyPath: "agent.ttl", Message: "bad"}, "a.yaml:3: agent.ttl: bad"},
		{Error{File: "a.yaml", Message: "bad"}, "a.yaml: bad"},
		{Error{KeyPath: "target.path", Message: "bad"}, "target.path: bad"},
		{Error{File: "a.yaml", Line: 1, Column: 1, KeyPath: "x", Code: CodeUnknownKey}, "a.yaml:1:1: unknown key x"},
		{Error{File: "a.yaml", Line: 1, Column: 1, KeyPath: "x", Message: "ignored", Severity: SeverityWarning}, "a.yaml:1:1: warning: x: ignored"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestKeyPathsQuoteOddKeys(t *testing.T) {
	_, err := Parse([]byte("feature:\n  fs:\n    mapping:\n      \"a.b(\": x\n"), "c.yaml")
	if err == nil || !strings.Contains(err.Error(), `c.yaml:4:7: feature.fs.mapping["a.b("]: invalid regular expression`) {
		t.Errorf("got %v", err)
	}
}

func TestDuplicateKeys(t *testing.T) {
	_, err := Parse([]byte(`{"feature": {"env": true, "env": false}}`), "c.json")
	if err == nil || err.Error() != "c.json:1:27: feature.env: duplicate key" {
		t.Errorf("got %v", err)
	}
}

func TestAliasBombIsBounded(t *testing.T) {
	// Merge keys over lists of aliases of lists: 10^9 entries if expanded.
	var b strings.Builder
	b.WriteString("a0: &a0 {x: \"1\"}\n")
	for i := 1; i <= 9; i++ {
		items := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", ")
		fmt.Fprintf(&b, "a%d: &a%d [%s]\n", i, i, items)
	}
	b.WriteString("agent:\n  labels:\n    <<: *a9\n")
	start := time.Now()
	_, err := Parse([]byte(b.String()), "bomb.yaml")
	if err == nil || !strings.Contains(err.Error(), "the document is too large") {
		t.Errorf("got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/*/*.*")
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			continue
		}
		first := toJSON(t, c)
		again, err := Parse([]byte(first), "again.json")
		if err != nil {
			t.Errorf("%s: the encoded config does not parse: %v\n%s", f, err, first)
			continue
		}
		if second := toJSON(t, again); second != first {
			t.Errorf("%s: round trip changed the config:\n%s\n%s", f, first, second)
		}
	}
}

func TestFind(t *testing.T) {
	write := func(dir string, names ...string) {
		t.Helper()
		for _, name := range names {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		files   []string
		want    string
		wantErr string
	}{
		{nil, "", ""},
		{[]string{".doppel/config.yaml"}, ".doppel/config.yaml", ""},
		{[]string{".mirrord/mirrord.json"}, ".mirrord/mirrord.json", ""},
		{[]string{".doppel/a.yml", ".mirrord/mirrord.json"}, ".doppel/a.yml", ""},
		{[]string{".doppel/README.md", ".mirrord/mirrord.json"}, ".mirrord/mirrord.json", ""},
		{[]string{".doppel/a.json", ".doppel/b.yaml"}, "", "several configuration files (a.json, b.yaml): choose one with --config"},
		{[]string{".mirrord/mirrord.toml"}, "", "TOML configuration files are not supported"},
	} {
		dir := t.TempDir()
		write(dir, tc.files...)
		got, err := Find(dir)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: error %v, want %q", tc.files, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.files, err)
			continue
		}
		if tc.want != "" {
			tc.want = filepath.Join(dir, tc.want)
		}
		if got != tc.want {
			t.Errorf("%v: got %q, want %q", tc.files, got, tc.want)
		}
	}
}

func TestLoadFoundProjectWithEnvFile(t *testing.T) {
	path, err := Find("testdata/project")
	if err != nil || path == "" {
		t.Fatalf("Find: %q, %v", path, err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// env_file is relative to the project directory, not to .doppel/.
	env := c.Feature.Env.Filter(nil, nil)
	if !contains(env, "FROM_FILE=yes") {
		t.Errorf("env = %q", env)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestApply(t *testing.T) {
	c := mustParse(t, "target: deployment/a\nfeature:\n  env:\n    exclude: [SECRET]\n  fs: read\n")
	err := c.Apply(Overrides{Target: "pod/b/container/c", Namespace: "dev", FSMode: "write", IncomingMode: "steal", EnvInclude: []string{"A;B", "C"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Target.Path.String() != "pod/b/container/c" || c.Target.Namespace != "dev" || c.Feature.FS.Mode != FSWrite ||
		c.Feature.Network.Incoming.Mode != IncomingSteal {
		t.Errorf("after Apply: %s", toJSON(t, c))
	}
	if !reflect.DeepEqual(c.Feature.Env.Include, NameList{"A", "B", "C"}) || c.Feature.Env.Exclude != nil {
		t.Errorf("env include %q exclude %q", c.Feature.Env.Include, c.Feature.Env.Exclude)
	}

	// A value from the command line is reported at no line of the file
	// (errors placed in the file start with its name); a value of the file
	// in conflict with a flag keeps its line.
	const steal = "feature:\n  network:\n    incoming: steal\n"
	const targetless = "target: targetless\nfeature:\n  network:\n    incoming:\n      ports: [80]\n"
	for _, tc := range []struct {
		file string
		o    Overrides
		want string
	}{
		{steal, Overrides{Target: "deploy/x"}, `target.path: invalid target kind "deploy"`},
		{steal, Overrides{FSMode: "raed"}, `feature.fs.mode: invalid value "raed": must be one of "read", "write", "local", "localwithoverrides" (did you mean "read"?)`},
		{steal, Overrides{IncomingMode: "steel"}, `feature.network.incoming.mode: invalid value "steel"`},
		{steal, Overrides{EnvInclude: []string{"A"}, EnvExclude: []string{"B"}}, "include and exclude cannot be used together"},
		{steal, Overrides{Target: "targetless"}, "test.yaml:3:15: feature.network.incoming.mode: steal needs a target"},
		// The file has feature.network.incoming, not its mode.
		{targetless, Overrides{IncomingMode: "steal"}, "feature.network.incoming.mode: steal needs a target; a targetless run has no traffic to steal (set on the command line)"},
		{targetless, Overrides{Target: "targetless", IncomingMode: "steal"}, "feature.network.incoming.mode: steal needs a target"},
	} {
		c := mustParse(t, tc.file)
		err := c.Apply(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) ||
			!strings.HasPrefix(tc.want, "test.yaml:") && strings.Contains(err.Error(), "test.yaml:") {
			t.Errorf("%+v: got %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestDefaultValidates(t *testing.T) {
	c := Default()
	if err := c.Apply(Overrides{}); err != nil {
		t.Fatal(err)
	}
	if !c.SkipBuildTools || !c.Feature.Hostname || c.Feature.FS.Mode != FSRead || c.Feature.Network.Incoming.Mode != IncomingMirror ||
		!c.Feature.Network.Outgoing.IgnoreLocalhost || !c.Feature.Network.DNS.Enabled || !c.Feature.Env.Enabled ||
		c.Agent.StartupTimeoutDuration() != time.Minute {
		t.Errorf("defaults: %s", toJSON(t, c))
	}
}

func TestSkipsProcess(t *testing.T) {
	c := mustParse(t, "skip_processes: bash\nskip_extra_build_tools: [bazel]\n")
	for name, want := range map[string]bool{
		"/usr/bin/bash": true, "go": true, "/usr/local/go/pkg/tool/linux_amd64/compile": true, "dlv": true,
		"bazel": true, "node": false, "python3": false, "server": false,
	} {
		if got := c.SkipsProcess(name); got != want {
			t.Errorf("SkipsProcess(%q) = %v", name, got)
		}
	}
	c = mustParse(t, "skip_build_tools: false\nskip_extra_build_tools: [bazel]\n")
	if c.SkipsProcess("go") || c.SkipsProcess("bazel") {
		t.Error("build tools skipped with skip_build_tools: false")
	}
}

// debugpy's launcher and adapter are the debugger's; the debuggee, even
// started through `-m debugpy`, is the program.
func TestSkipsDebuggerHelper(t *testing.T) {
	c := mustParse(t, "{}")
	for args, want := range map[string]bool{
		"python3 /usr/lib/python3/dist-packages/debugpy/launcher 41234 -- server.py":            true,
		"python3 -E /home/u/.vscode/extensions/ms-python.debugpy/bundled/libs/debugpy/adapter/": true,
		"python3 -m debugpy.adapter --port 5678":                                                true,
		"python3 -m debugpy --connect 127.0.0.1:41234 server.py":                                false,
		"python3 server.py /x/debugpy/launcher":                                                 false,
		"python3":                                                                               false,
	} {
		if got := c.SkipsDebuggerHelper(strings.Fields(args)); got != want {
			t.Errorf("SkipsDebuggerHelper(%s) = %v", args, got)
		}
	}
	c = mustParse(t, "skip_build_tools: false\n")
	if c.SkipsDebuggerHelper(strings.Fields("python3 -m debugpy.adapter")) {
		t.Error("debugger helper skipped with skip_build_tools: false")
	}
}

func TestNullElementsAreErrors(t *testing.T) {
	for text, want := range map[string]string{
		"agent: {resources: {limits: {cpu: }}}":                          "agent.resources.limits.cpu: expected a string, got null",
		"feature: {network: {incoming: {ports: [~, 80]}}}":               "feature.network.incoming.ports[0]: expected an integer, got null",
		"feature: {network: {incoming: {port_mapping: [[~, 1]]}}}":       "feature.network.incoming.port_mapping[0][0]: expected an integer, got null",
		"feature: {network: {incoming: {http_filter: {ports: [null]}}}}": "http_filter.ports[0]: expected an integer, got null",
		"agent: {labels: {a: null}}":                                     "agent.labels.a: expected a string, got null",
		"feature: {env: {override: {A: }}}":                              "feature.env.override.A: expected a string, got null",
		"skip_processes: [null]":                                         "skip_processes[0]: expected a string, got null",
	} {
		_, err := Parse([]byte(text), "c.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", text, err, want)
		}
	}
}

// mirrord's body rules are ignored, and never widen a filtered steal: in
// any_of the rule is left out; in all_of, or as the only filter, it is an
// error.
func TestBodyFiltersNeverWidenTheSteal(t *testing.T) {
	write := func(body string) string {
		p := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(p, []byte(`{"feature":{"network":{"incoming":{"mode":"steal","http_filter":`+body+`}}}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := Load(write(`{"any_of":[{"header":"^x-user: a$"},{"body":{"json_path":"$.user"}}]}`))
	if err != nil {
		t.Fatalf("any_of with a body rule: %v", err)
	}
	if rules := c.Feature.Network.Incoming.HTTPFilter.AnyOf; len(rules) != 1 || rules[0].Header != "^x-user: a$" {
		t.Errorf("any_of after leaving the body rule out: %+v", rules)
	}
	for _, body := range []string{
		`{"all_of":[{"header":"^x-user: a$"},{"body":{"json_path":"$.user"}}]}`,
		`{"any_of":[{"body":{"json_path":"$.user"}}]}`,
		`{"body_filter":{"json_path":"$.user"}}`,
	} {
		if _, err := Load(write(body)); err == nil || !strings.Contains(err.Error(), "body filter") {
			t.Errorf("http_filter %s: %v, want an error about the body filter", body, err)
		}
	}
}

// kubeconfig in a file is relative to the project, like env_file; unset
// stays unset.
func TestKubeconfigPathIsTheProjects(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, ".doppel"), 0o755)
	p := filepath.Join(dir, ".doppel", "config.yaml")
	os.WriteFile(p, []byte("kubeconfig: kube/dev.yaml\n"), 0o644)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.KubeconfigPath(); got != filepath.Join(dir, "kube", "dev.yaml") {
		t.Errorf("KubeconfigPath = %q", got)
	}
	os.WriteFile(p, []byte("target: targetless\n"), 0o644)
	if c, err = Load(p); err != nil || c.KubeconfigPath() != "" {
		t.Errorf("unset: %q %v", c.KubeconfigPath(), err)
	}
}
