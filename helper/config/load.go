package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Directories searched by Find, in order: doppel's own, then mirrord's, so
// that a project set up for mirrord works as it is.
var configDirs = []string{".doppel", ".mirrord"}

var configExts = []string{".json", ".yaml", ".yml"}

// maxFileSize bounds a configuration file; real ones are a few kilobytes.
const maxFileSize = 1 << 20

// origin is what a Config remembers of its file, so that Apply can
// validate again and still point at lines.
type origin struct {
	file        string
	projectDir  string
	values      map[string]pos
	display     map[string]string
	decodeWarns ErrorList
}

// Find returns the configuration file of the project in dir: the one file
// in dir/.doppel/, or else the one in dir/.mirrord/ (*.json, *.yaml,
// *.yml). It returns "" and no error when there is none. Several files in
// the same directory are an error: the user chooses with --config.
func Find(dir string) (string, error) {
	for _, sub := range configDirs {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", ErrorList{{File: filepath.Join(dir, sub), Code: CodeIO, Message: err.Error(), Err: err}}
		}
		var found, toml []string
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			ext := strings.ToLower(filepath.Ext(e.Name()))
			switch {
			case slices.Contains(configExts, ext):
				found = append(found, e.Name())
			case ext == ".toml":
				toml = append(toml, e.Name())
			}
		}
		switch {
		case len(found) == 1:
			return filepath.Join(dir, sub, found[0]), nil
		case len(found) > 1:
			return "", ErrorList{{File: filepath.Join(dir, sub), Code: CodeConflict,
				Message: fmt.Sprintf("several configuration files (%s): choose one with --config", strings.Join(found, ", "))}}
		case len(toml) > 0:
			return "", ErrorList{{File: filepath.Join(dir, sub, toml[0]), Code: CodeValue,
				Message: "TOML configuration files are not supported: convert it to JSON or YAML"}}
		}
	}
	return "", nil
}

// Load reads and parses a configuration file.
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, ErrorList{{File: path, Code: CodeIO, Message: err.Error(), Err: err}}
	}
	return Parse(data, path)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return data, nil
}

// Parse parses a configuration in JSON or YAML. name is the file's path:
// it appears in messages and locates relative paths (env_file). Keys not
// in the file keep their defaults. All errors are returned at once, as an
// ErrorList; warnings are in Config.Warnings (and in the ErrorList when
// there are errors).
func Parse(data []byte, name string) (*Config, error) {
	d := newDecoder(name)
	cfg := defaults()
	cfg.Source = name
	root, err := parseYAML(data, name)
	if err != nil {
		return nil, ErrorList{err}
	}
	if root != nil {
		if root.Kind != yaml.MappingNode {
			d.errorAt(root, "", CodeType, "a configuration is an object, got %s", describe(root))
		} else {
			d.decode(root, reflectValue(cfg), "")
		}
	}
	decodeWarns := slices.Clone(d.warns)
	// Values that failed to decode kept their (valid) defaults, so the
	// rest of the file can still be checked: an editor shows everything.
	cfg.validate(d, projectDir(name))
	cfg.origin = &origin{file: name, projectDir: projectDir(name), values: d.values, display: d.display, decodeWarns: decodeWarns}
	return cfg.finish(d)
}

// finish returns the config, or every error and warning sorted by place.
func (c *Config) finish(d *decoder) (*Config, error) {
	sortErrors(d.warns)
	if len(d.errs) > 0 {
		all := append(d.errs, d.warns...)
		sortErrors(all)
		return nil, all
	}
	c.Warnings = d.warns
	return c, nil
}

func sortErrors(l ErrorList) {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line == 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// projectDir is the directory relative paths in a file are relative to:
// the directory that holds .doppel/ or .mirrord/, else the file's own.
func projectDir(file string) string {
	if file == "" {
		return ""
	}
	dir := filepath.Dir(file)
	if slices.Contains(configDirs, filepath.Base(dir)) {
		return filepath.Dir(dir)
	}
	return dir
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses one YAML (or JSON) document; nil for an empty one.
func parseYAML(data []byte, name string) (root *yaml.Node, err *Error) {
	if len(data) > maxFileSize {
		return nil, &Error{File: name, Code: CodeValue, Message: fmt.Sprintf("the file is larger than %d bytes", maxFileSize)}
	}
	defer func() {
		// yaml.v3 has panicked on malformed input in the past; a broken
		// file must be an error in the editor, not a crashed server.
		if r := recover(); r != nil {
			root, err = nil, &Error{File: name, Code: CodeSyntax, Message: fmt.Sprintf("invalid YAML: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if e := dec.Decode(&doc); e != nil {
		if e == io.EOF {
			return nil, nil
		}
		if je := jsonSyntaxError(data, name); je != nil {
			return nil, je
		}
		return nil, syntaxError(e, name)
	}
	var extra yaml.Node
	switch e := dec.Decode(&extra); {
	case e == nil:
		return nil, &Error{File: name, Line: extra.Line, Column: extra.Column, Code: CodeSyntax,
			Message: "a configuration file holds one document; remove the second one (after \"---\")"}
	case e != io.EOF:
		return nil, syntaxError(e, name)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, nil
	}
	return doc.Content[0], nil
}

// jsonSyntaxError explains a syntax error in a JSON file with
// encoding/json, whose positions are exact; yaml.v3 reports the line where
// the enclosing object starts.
func jsonSyntaxError(data []byte, name string) *Error {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
		return nil
	}
	var v any
	err := json.Unmarshal(data, &v)
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return nil
	}
	line, col := lineCol(data, int(se.Offset)-1)
	return &Error{File: name, Line: line, Column: col, Code: CodeSyntax, Message: "invalid JSON: " + se.Error(), Err: err}
}

// lineCol converts a byte offset to a 1-based line and column (in runes).
func lineCol(data []byte, offset int) (int, int) {
	offset = max(0, min(offset, len(data)))
	before := data[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	return line, utf8.RuneCount(before[lineStart:]) + 1
}

func syntaxError(err error, name string) *Error {
	e := &Error{File: name, Code: CodeSyntax, Message: strings.TrimPrefix(err.Error(), "yaml: "), Err: err}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Message = m[2]
	}
	return e
}

// Default returns the configuration of an empty file.
func Default() *Config {
	c := defaults()
	d := newDecoder("")
	c.validate(d, "")
	if len(d.errs) > 0 {
		panic("config: the defaults do not validate: " + d.errs.Error())
	}
	c.origin = &origin{values: d.values, display: d.display}
	return c
}

// validate checks what decoding cannot (conflicts, regular expressions,
// filters) and compiles the rules the run uses.
func (c *Config) validate(d *decoder, projectDir string) {
	c.Agent.validate(d, c.Target.Path)
	c.validatePause(d)
	c.Feature.Env.validate(d, projectDir)
	c.Feature.FS.validate(d)
	net := &c.Feature.Network
	net.Outgoing.validate(d)
	net.dns = net.DNS.validate(d, &net.Outgoing)
	net.Incoming.validate(d, c.Target.Path)
	if f := net.Outgoing.Filter; f != nil && f.Remote != nil && !net.DNS.Enabled {
		for _, entry := range net.Outgoing.filter {
			if entry.Name != "" {
				d.warnf("feature.network.outgoing.filter.remote", CodeConflict,
					"names host names, but DNS is resolved locally (feature.network.dns is off): they resolve to local addresses")
				break
			}
		}
	}
	for _, list := range []struct {
		key   string
		names NameList
	}{{"skip_processes", c.SkipProcesses}, {"skip_extra_build_tools", c.SkipExtraBuildTools}} {
		for i, name := range list.names {
			if strings.Contains(name, "/") {
				d.warnf(indexKey(list.key, i), CodeValue, "programs are matched by base name; %q never matches, use %q", name, filepath.Base(name))
			}
		}
	}
}

// Overrides are the settings the command line can override.
type Overrides struct {
	Target       string   // "deployment/x", "pod/x/container/c" or "targetless"
	Namespace    string   // the target's namespace
	FSMode       string   // feature.fs.mode
	IncomingMode string   // feature.network.incoming.mode
	EnvInclude   []string // feature.env.include; each element may hold "A;B"
	EnvExclude   []string // feature.env.exclude; each element may hold "A;B"
}

// Apply applies command-line overrides and validates the result. Include
// and exclude replace each other, so that a flag wins over the file.
func (c *Config) Apply(o Overrides) error {
	d := newDecoder("")
	changed := map[string]bool{}
	if o.Target != "" {
		p, err := ParseTargetPath(o.Target)
		if err != nil {
			d.errorf("target.path", CodeValue, "%v", err)
		} else {
			c.Target.Path = p
			changed["target.path"] = true
		}
	}
	if o.Namespace != "" {
		if !dnsLabel.MatchString(o.Namespace) {
			d.errorf("target.namespace", CodeValue, "invalid namespace %q", o.Namespace)
		} else {
			c.Target.Namespace = o.Namespace
			changed["target.namespace"] = true
		}
	}
	if o.FSMode != "" {
		if !slices.Contains(FSMode("").enumValues(), o.FSMode) {
			d.errorf("feature.fs.mode", CodeValue, "%s", enumMessage(o.FSMode, FSMode("").enumValues()))
		} else {
			c.Feature.FS.Mode = FSMode(o.FSMode)
			changed["feature.fs.mode"] = true
		}
	}
	if o.IncomingMode != "" {
		if !slices.Contains(IncomingMode("").enumValues(), o.IncomingMode) {
			d.errorf("feature.network.incoming.mode", CodeValue, "%s", enumMessage(o.IncomingMode, IncomingMode("").enumValues()))
		} else {
			c.Feature.Network.Incoming.Mode = IncomingMode(o.IncomingMode)
			changed["feature.network.incoming.mode"] = true
		}
	}
	if o.EnvInclude != nil && o.EnvExclude != nil {
		d.errorf("feature.env", CodeConflict, "include and exclude cannot be used together")
	} else if o.EnvInclude != nil || o.EnvExclude != nil {
		env := &c.Feature.Env
		env.Enabled = true
		env.Include, env.Exclude = splitAll(o.EnvInclude), splitAll(o.EnvExclude)
		changed["feature.env.include"], changed["feature.env.exclude"] = true, true
	}
	if len(d.errs) > 0 {
		return d.errs
	}
	// Validate again, pointing at the file for what came from it and at
	// nothing for what came from the command line.
	orig := c.origin
	if orig == nil {
		orig = &origin{values: map[string]pos{}, display: map[string]string{}}
	}
	d = newDecoder(orig.file)
	d.overridden = changed
	for p, at := range orig.values {
		if !changedPath(changed, p) {
			d.values[p] = at
		}
	}
	d.display = orig.display
	d.warns = slices.Clone(orig.decodeWarns)
	c.validate(d, orig.projectDir)
	_, err := c.finish(d)
	return err
}

func changedPath(changed map[string]bool, path string) bool {
	for p := path; p != ""; p = parentKey(p) {
		if changed[p] {
			return true
		}
	}
	return false
}

func splitAll(values []string) NameList {
	if values == nil {
		return nil
	}
	out := NameList{}
	for _, v := range values {
		out = append(out, splitNames(v)...)
	}
	return out
}
