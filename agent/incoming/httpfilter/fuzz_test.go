package httpfilter

import (
	"strings"
	"testing"
	"time"
)

// FuzzMatch compiles an arbitrary pattern as each kind of rule and tests
// it on a request built from arbitrary parts: nothing may panic, and no
// call may run much past the match timeout. Seeds:
// testdata/fuzz/FuzzMatch.
func FuzzMatch(f *testing.F) {
	f.Add("^x-user: alice$", "GET", "/api/users", "user=alice", "X-User", "alice")
	f.Add("^User-Agent: (?!kube-probe)", "GET", "/healthz", "", "User-Agent", "kube-probe/1.34")
	f.Add(".+user=alice.*", "POST", "/x", "a=1&user=alice", "Content-Type", "text/plain")
	f.Add(`(a+)+$`, "GET", "/aaaaaaaaaaaaaaaaaaaaaaaaaaaa!", "", "A", "aaaaaaaaaaaaaaaaaaaaaaaa!")
	f.Add(`(?<=\d)x\1(?i:é)`, "get", "/é", "%00", "\x00", "\xff")
	f.Fuzz(func(t *testing.T, pattern, method, path, query, name, value string) {
		req := Request{Method: method, Path: path, RawQuery: query, Header: [][2]string{{name, value}, {"Host", "svc"}}}
		for _, rule := range []Rule{
			{Header: pattern},
			{Path: pattern},
			{Method: pattern},
			{AnyOf: []Rule{{Method: method}, {Header: pattern}}},
			{AllOf: []Rule{{Path: pattern}, {Header: pattern}}},
		} {
			flt, err := compile(rule, 5*time.Millisecond)
			if err != nil {
				if rule.Method != "" && isToken(rule.Method) {
					t.Fatalf("method %q is a token but was rejected: %v", rule.Method, err)
				}
				continue
			}
			start := time.Now()
			got := flt.Match(req)
			// A 5 ms timeout on regexp2's 100 ms clock, with slack.
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("Match(%q) took %v", pattern, d)
			}
			if rule.Method != "" && got != strings.EqualFold(method, pattern) {
				t.Fatalf("method rule %q on %q = %v", pattern, method, got)
			}
		}
	})
}
