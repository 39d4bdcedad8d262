package httpfilter

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dlclark/regexp2"
	"golang.org/x/net/http/httpguts"
)

// Rule is one filter as it travels from the helper to the agent: exactly
// one of its fields is set. AllOf and AnyOf hold nested rules.
type Rule struct {
	// A regular expression tested on each "Name: value" header line.
	Header string `json:"header,omitempty"`
	// A regular expression tested on the path, then on path?query.
	Path string `json:"path,omitempty"`
	// A method, compared without regard to case.
	Method string `json:"method,omitempty"`
	// Every rule of the list must match.
	AllOf []Rule `json:"all_of,omitempty"`
	// At least one rule of the list must match.
	AnyOf []Rule `json:"any_of,omitempty"`
}

// MatchTimeout bounds one regular-expression test. regexp2 checks it on a
// coarse clock (100 ms ticks), so a test may run a little longer.
const MatchTimeout = 50 * time.Millisecond

// Bounds on a rule tree: it comes from an authenticated helper, but a
// broken one must not make the agent recurse or allocate without end.
const (
	maxPattern = 4096
	maxDepth   = 16
	maxRules   = 256
)

type kind int

const (
	kindHeader kind = iota
	kindPath
	kindMethod
	kindAllOf
	kindAnyOf
)

// Filter is a compiled Rule. It is safe for concurrent use.
type Filter struct {
	kind   kind
	re     *regexp2.Regexp
	method string
	subs   []*Filter
}

// Compile checks a rule and compiles its patterns.
func Compile(r Rule) (*Filter, error) {
	return compile(r, MatchTimeout)
}

func compile(r Rule, timeout time.Duration) (*Filter, error) {
	c := compiler{timeout: timeout}
	return c.rule(r, "", 0)
}

type compiler struct {
	timeout time.Duration
	rules   int
}

func (c *compiler) rule(r Rule, at string, depth int) (*Filter, error) {
	c.rules++
	if c.rules > maxRules {
		return nil, fmt.Errorf("more than %d rules", maxRules)
	}
	if depth > maxDepth {
		return nil, fmt.Errorf("%s: nested more than %d deep", where(at), maxDepth)
	}
	var set []string
	for _, f := range []struct {
		key string
		on  bool
	}{{"header", r.Header != ""}, {"path", r.Path != ""}, {"method", r.Method != ""}, {"all_of", r.AllOf != nil}, {"any_of", r.AnyOf != nil}} {
		if f.on {
			set = append(set, f.key)
		}
	}
	if len(set) != 1 {
		what := "none"
		if len(set) > 1 {
			what = strings.Join(set, ", ")
		}
		return nil, fmt.Errorf("%s: needs exactly one of header, path, method, all_of and any_of (has %s)", where(at), what)
	}
	switch {
	case r.Header != "":
		return c.regex(kindHeader, r.Header, join(at, "header"))
	case r.Path != "":
		return c.regex(kindPath, r.Path, join(at, "path"))
	case r.Method != "":
		if !isToken(r.Method) {
			return nil, fmt.Errorf("%s: invalid HTTP method %q", join(at, "method"), r.Method)
		}
		return &Filter{kind: kindMethod, method: r.Method}, nil
	case r.AllOf != nil:
		return c.list(kindAllOf, r.AllOf, join(at, "all_of"), depth)
	default:
		return c.list(kindAnyOf, r.AnyOf, join(at, "any_of"), depth)
	}
}

func (c *compiler) regex(k kind, pattern, at string) (*Filter, error) {
	if len(pattern) > maxPattern {
		return nil, fmt.Errorf("%s: regular expression longer than %d characters", at, maxPattern)
	}
	re, err := compileRegexp(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid regular expression %q: %s", at, pattern, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	re.MatchTimeout = c.timeout
	return &Filter{kind: k, re: re}, nil
}

// compileRegexp turns a panic of the regexp2 parser on an odd pattern
// into an error: the pattern comes from the wire.
func compileRegexp(pattern string) (re *regexp2.Regexp, err error) {
	defer func() {
		if p := recover(); p != nil {
			re, err = nil, errors.New("rejected by the regexp2 parser")
		}
	}()
	return regexp2.Compile(pattern, regexp2.IgnoreCase)
}

func (c *compiler) list(k kind, rules []Rule, at string, depth int) (*Filter, error) {
	if len(rules) == 0 {
		return nil, fmt.Errorf("%s: must not be empty", at)
	}
	f := &Filter{kind: k}
	for i, r := range rules {
		sub, err := c.rule(r, fmt.Sprintf("%s[%d]", at, i), depth+1)
		if err != nil {
			return nil, err
		}
		f.subs = append(f.subs, sub)
	}
	return f, nil
}

func where(at string) string {
	if at == "" {
		return "filter"
	}
	return at
}

func join(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

// isToken reports whether s is an RFC 9110 token, which a method is.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}
