package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"strings"

	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// FSConfig decides, per path, whether the local process opens the
// target's file or the local one. In the file it is a mode string, a
// boolean (true is "read", false is "local") or an object.
type FSConfig struct {
	// The default for paths no rule decides: "read" (read the target's files, create and
	// write local ones), "write" (read and write the target's files), "localwithoverrides"
	// (local files, except the paths that rules make remote) or "local" (no file is remote;
	// rules are ignored).
	Mode FSMode `json:"mode"`

	// Regular expressions of paths read from the target and written locally. Case-insensitive,
	// searched anywhere in the absolute path (anchor them with ^ and $).
	ReadOnly StringList `json:"read_only,omitempty"`

	// Regular expressions of paths read from and written to the target.
	ReadWrite StringList `json:"read_write,omitempty"`

	// Regular expressions of paths always opened locally.
	Local StringList `json:"local,omitempty"`

	// Regular expressions of paths that do not exist for the local process.
	NotFound StringList `json:"not_found,omitempty"`

	// Path rewrites applied before every rule: {"^/home/(?<user>[^/]+)/dev/config": "/etc/app"}.
	// Replacements may use $1 or ${name} for the pattern's groups. The first matching pattern wins.
	Mapping RegexMap `json:"mapping,omitempty"`

	// Compiled by validate.
	readOnly, readWrite, local, notFound []*regexp.Regexp
	mapping                              []pathMapping
}

type pathMapping struct {
	pattern     *regexp.Regexp
	replacement string
}

func (f *FSConfig) decodeNode(d *decoder, n *yaml.Node, path string) {
	switch {
	case isBool(n):
		if on, _ := d.boolValue(n, path, ""); on {
			f.Mode = FSRead
		} else {
			f.Mode = FSLocal
		}
	case isString(n):
		d.decode(n, reflectValue(&f.Mode), joinKey(path, "mode"))
	case n.Kind == yaml.MappingNode:
		d.decodeStruct(n, reflectValue(f), path)
	default:
		d.typeError(n, path, `a mode ("read", "write", "local", "localwithoverrides"), a boolean or an object`)
	}
}

// JSONSchemaExtend adds the boolean and mode shorthands.
func (FSConfig) JSONSchemaExtend(s *jsonschema.Schema) {
	withShorthands(s, &jsonschema.Schema{Type: "boolean"}, enumSchema(FSMode("").enumValues()))
}

// FSMode is the default file behavior.
type FSMode string

// The file modes.
const (
	FSRead               FSMode = "read"
	FSWrite              FSMode = "write"
	FSLocal              FSMode = "local"
	FSLocalWithOverrides FSMode = "localwithoverrides"
)

func (FSMode) enumValues() []string {
	return []string{"read", "write", "local", "localwithoverrides"}
}

// JSONSchema lists the modes.
func (m FSMode) JSONSchema() *jsonschema.Schema { return enumSchema(m.enumValues()) }

// FileDecision is where an open of a path goes.
type FileDecision int

// The file decisions.
const (
	// FileLocal opens the local file.
	FileLocal FileDecision = iota
	// FileRemote opens the target's file.
	FileRemote
	// FileNotFound makes the path not exist (ENOENT).
	FileNotFound
)

func (f FileDecision) String() string {
	switch f {
	case FileRemote:
		return "remote"
	case FileNotFound:
		return "not-found"
	}
	return "local"
}

// HostPaths are the facts the default file rules depend on: the local
// program's places, which stay local, and the target application's, which
// are read remotely even where a system directory would be local.
type HostPaths struct {
	WorkDir    string // the local process's working directory
	Home       string // the local user's home directory
	TempDir    string // the local temporary directory
	Executable string // the program being run
	// TargetAppPaths are the target application's directories in the pod:
	// its working directory, its executable's directory, its volume mounts.
	TargetAppPaths []string
}

// LocalHostPaths fills HostPaths from the current process.
func LocalHostPaths() HostPaths {
	h := HostPaths{TempDir: os.TempDir()}
	h.WorkDir, _ = os.Getwd()
	h.Home, _ = os.UserHomeDir()
	return h
}

// FileRules decide where each path is opened. Build them with
// FSConfig.Rules once per run; they are safe for concurrent use.
type FileRules struct {
	fs            *FSConfig
	notFound      *regexp.Regexp // default not-found paths under the home directory
	localFirst    *regexp.Regexp // the local program's own files
	remoteDefault *regexp.Regexp // name service files, read from the target
	targetApp     *regexp.Regexp // the target application's directories
	localSystem   *regexp.Regexp // system directories
}

// Default rules. They are anchored regular expressions on absolute paths.
var (
	// Files of the local program, its interpreter and its libraries, by
	// kind: whatever directory they are in, they are the local program's.
	defaultLocalFiles = []string{
		`^/proc(/|$)`, `^/sys(/|$)`, `^/dev(/|$)`,
		`\.(so(\.[0-9]+)*|a|o|d|py|pyc|pyo|pth|pyi|rb|jar|class|jmod|js|mjs|cjs|ts|node|wasm|dll|pdb)$`,
		`(^|/)jvm\.cfg$`, `(^|/)pyvenv\.cfg$`, `(^|/)venv\.cfg$`,
		`/(node_modules|site-packages|dist-packages|__pycache__|\.venv)(/|$)`,
		`/package\.json$`, `/\.yarnrc(\.yml|\.json)?$`, `/\.npmrc$`, `/\.tool-versions$`, `/\.asdf/`,
	}
	// Name service files: the target's, so that names resolve as in the pod.
	defaultRemoteFiles = []string{
		`^/etc/(resolv\.conf|hosts|hostname|nsswitch\.conf)$`,
	}
	// System directories: the local machine's (interpreters, toolchains,
	// libraries, configuration, other users' homes).
	defaultLocalDirs = []string{
		`^/$`,
		`^/(usr|lib|lib32|lib64|libx32|bin|sbin|etc|opt|nix|snap|home|root|run|selinux|tmp|var/tmp)(/|$)`,
	}
	// Cloud and cluster credentials in the local home directory: the
	// program must use the pod's identity, not the developer's.
	defaultNotFoundInHome = []string{`\.aws`, `\.config/gcloud`, `\.kube`, `\.azure`}
)

// Rules builds the file rules for one run. User rules come first (in the
// order read_write, read_only, local, not_found), then the defaults: the
// local credentials that must not be found, the local program's files
// (working directory, executable, home dot-files, temporary directory,
// interpreter and library files), the target's name service files, the
// target application's directories, the system directories, and last the
// mode.
func (f *FSConfig) Rules(h HostPaths) *FileRules {
	r := &FileRules{fs: f}
	var local []string
	local = append(local, defaultLocalFiles...)
	if dir := cleanDir(h.WorkDir); dir != "" {
		local = append(local, "^"+regexp.QuoteMeta(dir)+"(/|$)")
	}
	if h.Executable != "" {
		local = append(local, "^"+regexp.QuoteMeta(filepath.Clean(h.Executable))+"$")
	}
	if home := cleanDir(h.Home); home != "" {
		local = append(local, "^"+regexp.QuoteMeta(home)+`/\.`)
		var creds []string
		for _, c := range defaultNotFoundInHome {
			creds = append(creds, "^"+regexp.QuoteMeta(home)+"/"+c+"(/|$)")
		}
		r.notFound = alternation(creds)
	}
	if tmp := cleanDir(h.TempDir); tmp != "" {
		local = append(local, "^"+regexp.QuoteMeta(tmp)+"(/|$)")
	}
	r.localFirst = alternation(local)
	r.remoteDefault = alternation(defaultRemoteFiles)
	var app []string
	for _, p := range h.TargetAppPaths {
		if dir := cleanDir(p); dir != "" {
			app = append(app, "^"+regexp.QuoteMeta(dir)+"(/|$)")
		}
	}
	r.targetApp = alternation(app)
	r.localSystem = alternation(defaultLocalDirs)
	return r
}

// cleanDir cleans an absolute directory; "" for "/" and relative paths,
// which would match everything.
func cleanDir(dir string) string {
	if dir == "" || !filepath.IsAbs(dir) {
		return ""
	}
	dir = filepath.Clean(dir)
	if dir == "/" {
		return ""
	}
	return dir
}

func alternation(patterns []string) *regexp.Regexp {
	if len(patterns) == 0 {
		return nil
	}
	return regexp.MustCompile("(?:" + strings.Join(patterns, ")|(?:") + ")")
}

// FileMode decides where a read of path goes. path is absolute.
func (r *FileRules) FileMode(path string) FileDecision {
	decision, _ := r.Resolve(path, false)
	return decision
}

// Resolve decides where an open of path goes (write is true when the open
// may write or create) and returns the path to open there: mapping may
// have rewritten it.
func (r *FileRules) Resolve(path string, write bool) (FileDecision, string) {
	fs := r.fs
	if fs.Mode == FSLocal {
		return FileLocal, path
	}
	path = fs.mapPath(path)
	// readRemote is "remote for reads, local for writes".
	readRemote := FileRemote
	if write {
		readRemote = FileLocal
	}
	switch {
	case anyMatch(fs.readWrite, path):
		return FileRemote, path
	case anyMatch(fs.readOnly, path):
		return readRemote, path
	case anyMatch(fs.local, path):
		return FileLocal, path
	case anyMatch(fs.notFound, path):
		return FileNotFound, path
	case matches(r.notFound, path):
		return FileNotFound, path
	case matches(r.localFirst, path):
		return FileLocal, path
	case matches(r.remoteDefault, path):
		return readRemote, path
	case matches(r.targetApp, path):
		if fs.Mode == FSWrite {
			return FileRemote, path
		}
		return readRemote, path
	case matches(r.localSystem, path):
		return FileLocal, path
	}
	switch fs.Mode {
	case FSWrite:
		return FileRemote, path
	case FSRead:
		return readRemote, path
	}
	return FileLocal, path
}

func (f *FSConfig) mapPath(path string) string {
	for _, m := range f.mapping {
		if loc := m.pattern.FindStringSubmatchIndex(path); loc != nil {
			// Like Rust's Regex::replace: the first match is replaced.
			var b []byte
			b = append(b, path[:loc[0]]...)
			b = m.pattern.ExpandString(b, m.replacement, path, loc)
			b = append(b, path[loc[1]:]...)
			return string(b)
		}
	}
	return path
}

func anyMatch(res []*regexp.Regexp, path string) bool {
	for _, re := range res {
		if re.MatchString(path) {
			return true
		}
	}
	return false
}

func matches(re *regexp.Regexp, path string) bool {
	return re != nil && re.MatchString(path)
}

// maxPattern bounds one regular expression's length.
const maxPattern = 4096

// compileRegex compiles a user's regular expression. Path patterns are
// case-insensitive, as in mirrord.
func compileRegex(pattern string, caseInsensitive bool) (*regexp.Regexp, error) {
	if len(pattern) > maxPattern {
		return nil, fmt.Errorf("regular expression longer than %d characters", maxPattern)
	}
	expr := pattern
	if caseInsensitive {
		expr = "(?i)" + pattern
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		msg := err.Error()
		var se *syntax.Error
		if errors.As(err, &se) {
			msg = fmt.Sprintf("%s: `%s`", se.Code, strings.TrimPrefix(se.Expr, "(?i)"))
		}
		return nil, fmt.Errorf("invalid regular expression %q: %s", pattern, msg)
	}
	return re, nil
}

func (f *FSConfig) validate(d *decoder) {
	const path = "feature.fs"
	compile := func(key string, list StringList) []*regexp.Regexp {
		var out []*regexp.Regexp
		for i, p := range list {
			re, err := compileRegex(p, true)
			if err != nil {
				d.errorf(indexKey(path+"."+key, i), CodeValue, "%v", err)
				continue
			}
			out = append(out, re)
		}
		return out
	}
	f.readOnly = compile("read_only", f.ReadOnly)
	f.readWrite = compile("read_write", f.ReadWrite)
	f.local = compile("local", f.Local)
	f.notFound = compile("not_found", f.NotFound)
	f.mapping = nil
	for _, m := range f.Mapping {
		re, err := compileRegex(m.Pattern, false)
		if err != nil {
			d.errorf(joinKey(path+".mapping", m.Pattern), CodeValue, "%v", err)
			continue
		}
		f.mapping = append(f.mapping, pathMapping{pattern: re, replacement: m.Replacement})
	}
	if f.Mode == FSLocal && (len(f.ReadOnly)+len(f.ReadWrite)+len(f.NotFound)+len(f.Mapping)) > 0 {
		d.warnf(path+".mode", CodeConflict, `mode "local" ignores read_only, read_write, not_found and mapping; use "localwithoverrides" to keep them`)
	}
}
