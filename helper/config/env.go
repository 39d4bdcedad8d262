package config

import (
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// EnvConfig chooses the environment of the local process. In the file it
// is true (import the target's environment), false (keep the local one)
// or an object.
type EnvConfig struct {
	// Enabled is false when the file says "env": false: the local process
	// keeps its own environment.
	Enabled bool `json:"-"`

	// Import only the target's variables whose names match: a list, or names separated by
	// ";". "*" matches any text, "?" one character. Variables excluded by default (PATH,
	// HOME, ...) are imported only when listed by their exact name. Cannot be used with exclude.
	Include NameList `json:"include,omitempty"`

	// Import all of the target's variables except those whose names match (besides the ones
	// excluded by default): a list, or names separated by ";". "*" and "?" are wildcards.
	// Cannot be used with include.
	Exclude NameList `json:"exclude,omitempty"`

	// Variables to set in the local process, whatever the target and the local machine say.
	Override EnvValues `json:"override,omitempty"`

	// Variables to remove from the local process (case-insensitive): a list, or names
	// separated by ";". Useful for local settings such as AWS_PROFILE that make the program
	// behave as if it ran locally.
	Unset NameList `json:"unset,omitempty"`

	// A dotenv file whose variables are set in the local process, over the target's (but
	// under override). A relative path is relative to the project directory: the directory
	// that holds .doppel/ (or .mirrord/). Supports comments, quotes and "export ".
	EnvFile string `json:"env_file,omitempty"`

	// Replace the values of the target's variables whose names match a regular expression:
	// {"_TIMEOUT$": "1000"}. The first matching pattern wins.
	Mapping RegexMap `json:"mapping,omitempty"`

	// Compiled by validate.
	mapping  []envMapping
	fileVars []envVar
}

func (e *EnvConfig) decodeNode(d *decoder, n *yaml.Node, path string) {
	if isBool(n) {
		e.Enabled, _ = d.boolValue(n, path, "")
		return
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a boolean or an object")
		return
	}
	e.Enabled = true
	d.decodeStruct(n, reflectValue(e), path)
}

// envConfigJSON is EnvConfig without its methods, for encoding.
type envConfigJSON EnvConfig

// MarshalJSON writes false for a disabled feature, as the file said.
func (e EnvConfig) MarshalJSON() ([]byte, error) {
	if !e.Enabled {
		return []byte("false"), nil
	}
	return json.Marshal(envConfigJSON(e))
}

// JSONSchemaExtend adds the boolean shorthand.
func (EnvConfig) JSONSchemaExtend(s *jsonschema.Schema) {
	withShorthands(s, &jsonschema.Schema{Type: "boolean"})
}

// DefaultEnvExclude are the variables that describe the local machine, the
// local user session or the local toolchain: importing the target's values
// would break the local program, its tools or the debugger (PATH, HOME,
// JAVA_TOOL_OPTIONS and NODE_OPTIONS carry debugger agents; LD_PRELOAD
// carries doppel's own library). They keep their local values unless
// include names them exactly.
var DefaultEnvExclude = []string{
	// The user, the session, the terminal.
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "SHLVL", "HOSTNAME",
	"TERM", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "COLORTERM", "COLUMNS", "LINES",
	"LANG", "LANGUAGE", "LC_*", "TMPDIR", "TMP", "TEMP", "DISPLAY", "WAYLAND_DISPLAY",
	"XDG_*", "DBUS_SESSION_BUS_ADDRESS", "SSH_*", "MAIL", "EDITOR", "VISUAL", "KUBECONFIG",
	// The dynamic linker, where doppel's preload library lives.
	"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT",
	// Toolchains and interpreters.
	"JAVA_HOME", "JAVA_OPTS", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH", "JAVA_EXE",
	"MAVEN_HOME", "M2_HOME", "GRADLE_HOME", "GRADLE_USER_HOME",
	"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "CONDA_*",
	"GOPATH", "GOROOT", "GOBIN", "GOCACHE", "GOMODCACHE", "GOFLAGS", "GOTOOLCHAIN", "GOOS", "GOARCH",
	"NODE_PATH", "NODE_OPTIONS", "NVM_DIR", "NPM_CONFIG_PREFIX",
	"GEM_HOME", "GEM_PATH", "RUBYLIB", "RUBYOPT", "BUNDLE_PATH",
	"CARGO_HOME", "RUSTUP_HOME", "DOTNET_ROOT", "HOMEPATH",
	// doppel's own variables (session socket, ...).
	"DOPPEL_*",
}

// Filter returns the environment for the local process, as "NAME=value"
// strings sorted by name: the local environment, with the target's
// variables allowed by include/exclude (and the default exclusions) on
// top, then mapping, env_file and override applied, and unset removed.
func (e *EnvConfig) Filter(remote map[string]string, local []string) []string {
	env := map[string]string{}
	for _, kv := range local {
		name, value, ok := strings.Cut(kv, "=")
		if ok && name != "" {
			env[name] = value
		}
	}
	if e.Enabled {
		for name, value := range remote {
			if e.imports(name) {
				env[name] = e.mapped(name, value)
			}
		}
	}
	for _, v := range e.fileVars {
		env[v.name] = v.value
	}
	for name, value := range e.Override {
		env[name] = value
	}
	for _, name := range e.Unset {
		for have := range env {
			if strings.EqualFold(have, name) {
				delete(env, have)
			}
		}
	}
	out := make([]string, 0, len(env))
	for name, value := range env {
		out = append(out, name+"="+value)
	}
	sort.Strings(out)
	return out
}

// Imports reports whether the target's variable name is imported.
func (e *EnvConfig) Imports(name string) bool {
	return e.Enabled && e.imports(name)
}

func (e *EnvConfig) imports(name string) bool {
	if name == "" || strings.ContainsRune(name, '=') {
		return false
	}
	if len(e.Include) > 0 {
		// A default exclusion is lifted only by its exact name: "include":
		// "*" must not import the target's PATH.
		if matchesAny(DefaultEnvExclude, name) {
			return slices.Contains(e.Include, name)
		}
		return matchesAny(e.Include, name)
	}
	return !matchesAny(DefaultEnvExclude, name) && !matchesAny(e.Exclude, name)
}

type envMapping struct {
	name  *regexp.Regexp
	value string
}

func (e *EnvConfig) mapped(name, value string) string {
	for _, m := range e.mapping {
		if m.name.MatchString(name) {
			return m.value
		}
	}
	return value
}

func matchesAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if wildcardMatch(p, name) {
			return true
		}
	}
	return false
}

// wildcardMatch matches name against a pattern where "*" is any text and
// "?" one character (not path.Match: no character classes, "/" is
// ordinary).
func wildcardMatch(pattern, name string) bool {
	// Iterative matcher with one backtrack point: linear for practical
	// patterns, never exponential.
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == name[n]):
			p++
			n++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

func (e *EnvConfig) validate(d *decoder, projectDir string) {
	const path = "feature.env"
	if len(e.Include) > 0 && len(e.Exclude) > 0 {
		d.errorf(path+".include", CodeConflict, "include and exclude cannot be used together: include imports only what it lists")
	}
	for _, list := range []struct {
		key   string
		names []string
	}{{"include", e.Include}, {"exclude", e.Exclude}, {"unset", e.Unset}} {
		for i, name := range list.names {
			if name == "" || strings.ContainsAny(name, "=\x00") {
				d.errorf(indexKey(path+"."+list.key, i), CodeValue, "invalid variable name %q", name)
			}
		}
	}
	for name := range e.Override {
		if name == "" || strings.ContainsAny(name, "=\x00") {
			d.errorf(joinKey(path+".override", name), CodeValue, "invalid variable name %q", name)
		}
		if slices.ContainsFunc(e.Unset, func(u string) bool { return strings.EqualFold(u, name) }) {
			d.warnf(joinKey(path+".override", name), CodeConflict, "also listed in unset, which wins: the variable is removed")
		}
	}
	e.mapping = nil
	for _, m := range e.Mapping {
		re, err := compileRegex(m.Pattern, false)
		if err != nil {
			d.errorf(joinKey(path+".mapping", m.Pattern), CodeValue, "%v", err)
			continue
		}
		e.mapping = append(e.mapping, envMapping{name: re, value: m.Replacement})
	}
	e.fileVars = nil
	if e.EnvFile != "" {
		vars, err := readEnvFile(resolvePath(projectDir, e.EnvFile))
		if err != nil {
			if pe, ok := err.(*Error); ok {
				// A syntax error inside the dotenv file is located there.
				pe.KeyPath = path + ".env_file"
				d.errs = append(d.errs, pe)
			} else {
				ioErr := d.located(path+".env_file", CodeIO, SeverityError, err.Error())
				ioErr.Err = err
				d.errs = append(d.errs, ioErr)
			}
			return
		}
		e.fileVars = vars
	}
}
