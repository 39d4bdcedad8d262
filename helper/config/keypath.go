package config

// Key paths (feature.network.incoming, env["A B"], ports[0]) as errors
// name them, and the suggestions for a key that is not known.

import (
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

var plainKey = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_-]*$`)

func joinKey(parent, key string) string {
	if !plainKey.MatchString(key) {
		return parent + "[" + strconv.Quote(key) + "]"
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func indexKey(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// parentKey strips the last segment of a key path.
func parentKey(path string) string {
	if strings.HasSuffix(path, "]") {
		// A quoted key may contain "[": find the bracket that opens the
		// last segment by scanning for the quote structure.
		if i := lastSegmentBracket(path); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

func lastSegmentBracket(path string) int {
	if strings.HasSuffix(path, "\"]") {
		// `["…"]`: walk back to the opening quote, skipping escaped quotes.
		for i := len(path) - 3; i >= 1; i-- {
			if path[i] == '"' && path[i-1] == '[' && !escaped(path, i) {
				return i - 1
			}
		}
		return -1
	}
	return strings.LastIndexByte(path, '[')
}

func escaped(s string, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && s[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// normalizedKey drops list indices: "a.b[2].c" -> "a.b.c".
func normalizedKey(path string) string {
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		if path[i] == '[' && i+1 < len(path) && path[i+1] >= '0' && path[i+1] <= '9' {
			j := strings.IndexByte(path[i:], ']')
			if j > 0 {
				i += j
				continue
			}
		}
		b.WriteByte(path[i])
	}
	return b.String()
}

// Suggestions.

// suggest returns the candidate closest to s, if it is close enough to be
// a typo.
func suggest(s string, candidates []string) string {
	best, bestDist := "", math.MaxInt
	for _, c := range candidates {
		if strings.EqualFold(s, c) {
			return c
		}
	}
	// An abbreviation: "deploy" for "deployment".
	if len(s) >= 3 {
		for _, c := range candidates {
			if strings.HasPrefix(strings.ToLower(c), strings.ToLower(s)) {
				return c
			}
		}
	}
	for _, c := range candidates {
		if dist := editDistance(strings.ToLower(s), strings.ToLower(c)); dist < bestDist {
			best, bestDist = c, dist
		}
	}
	limit := 2
	if len(s) <= 4 {
		limit = 1
	}
	if bestDist <= limit {
		return best
	}
	return ""
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions ("raed" is one from "read").
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	rows := make([][]int, len(a)+1)
	for i := range rows {
		rows[i] = make([]int, len(b)+1)
		rows[i][0] = i
	}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			rows[i][j] = min(rows[i-1][j]+1, rows[i][j-1]+1, rows[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				rows[i][j] = min(rows[i][j], rows[i-2][j-2]+1)
			}
		}
	}
	return rows[len(a)][len(b)]
}

// knownElsewhere finds a key of that name at another place of the
// configuration ("incoming" written under "feature" instead of
// "feature.network").
func knownElsewhere(key string) string {
	paths := allKeyPaths()[key]
	if len(paths) == 1 {
		return paths[0]
	}
	return ""
}

var allKeyPaths = sync.OnceValue(func() map[string][]string {
	out := map[string][]string{}
	var walk func(t reflect.Type, path string, depth int)
	walk = func(t reflect.Type, path string, depth int) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || depth > 8 {
			return
		}
		for _, name := range fieldsOf(t).names {
			f, _ := t.FieldByName(fieldNameFor(t, name))
			p := joinKey(path, name)
			out[name] = append(out[name], p)
			walk(f.Type, p, depth+1)
		}
	}
	walk(reflect.TypeFor[Config](), "", 0)
	return out
})

func fieldNameFor(t reflect.Type, key string) string {
	for i := range t.NumField() {
		if jsonName(t.Field(i)) == key {
			return t.Field(i).Name
		}
	}
	return ""
}
