package httpfilter

import (
	"strings"
	"testing"
	"time"
)

func TestMatch(t *testing.T) {
	get := Request{
		Method:   "GET",
		Path:     "/api/users",
		RawQuery: "user=alice&x=1",
		Header:   [][2]string{{"Host", "svc"}, {"User-Agent", "curl/8.5"}, {"X-User", "Alice"}},
	}
	probe := Request{
		Method: "GET",
		Path:   "/healthz",
		Header: [][2]string{{"Host", "10.0.0.7:8080"}, {"User-Agent", "kube-probe/1.34"}},
	}
	post := Request{Method: "POST", Path: "/api/orders", Header: [][2]string{{"baggage", "team=a, session=42"}}}
	for _, tc := range []struct {
		name string
		rule Rule
		want []bool // get, probe, post
	}{
		{"header exact", Rule{Header: "^x-user: alice$"}, []bool{true, false, false}},
		{"header name case", Rule{Header: "^X-USER: ALICE$"}, []bool{true, false, false}},
		{"header value part", Rule{Header: "^baggage: .*session=42"}, []bool{false, false, true}},
		{"header look-ahead", Rule{Header: "^User-Agent: (?!kube-probe)"}, []bool{true, false, false}},
		{"header not across lines", Rule{Header: "curl.*alice"}, []bool{false, false, false}},
		{"path prefix", Rule{Path: "^/api/"}, []bool{true, false, true}},
		{"path query", Rule{Path: ".+user=alice.*"}, []bool{true, false, false}},
		{"path anchored without query", Rule{Path: "^/api/users$"}, []bool{true, false, false}},
		{"path anchored with query", Rule{Path: `^/api/users\?user=`}, []bool{true, false, false}},
		{"method", Rule{Method: "post"}, []bool{false, false, true}},
		{"method exact", Rule{Method: "POS"}, []bool{false, false, false}},
		{"all_of", Rule{AllOf: []Rule{{Method: "GET"}, {Path: "^/api/"}}}, []bool{true, false, false}},
		{"any_of", Rule{AnyOf: []Rule{{Method: "POST"}, {Header: "kube-probe"}}}, []bool{false, true, true}},
		{"nested", Rule{AnyOf: []Rule{
			{AllOf: []Rule{{Method: "GET"}, {Header: "^user-agent: (?!kube-probe)"}}},
			{Path: "orders$"},
		}}, []bool{true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Compile(tc.rule)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range []Request{get, probe, post} {
				if got := f.Match(r); got != tc.want[i] {
					t.Errorf("request %d (%s %s): Match = %v, want %v", i, r.Method, r.Path, got, tc.want[i])
				}
			}
		})
	}
}

// TestMatchTimeout: a catastrophic pattern on a hostile header costs about
// one timeout, counts as no match, and leaves the filter usable.
func TestMatchTimeout(t *testing.T) {
	f, err := Compile(Rule{AnyOf: []Rule{{Header: `^x-a: (a+)+$`}, {Path: "^/never"}}})
	if err != nil {
		t.Fatal(err)
	}
	evil := "x-a: " + strings.Repeat("a", 40) + "!"
	var header [][2]string
	for range 40 {
		header = append(header, [2]string{"X-A", evil[len("x-a: "):]})
	}
	start := time.Now()
	if f.Match(Request{Method: "GET", Path: "/never", Header: header}) {
		t.Fatal("a request whose test timed out matched")
	}
	// One timeout, with slack for a loaded machine; 40 header lines each
	// timing out would take 2 s.
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Match took %v", d)
	}
	if !f.Match(Request{Method: "GET", Path: "/never", Header: [][2]string{{"X-A", "aaa!"}}}) {
		t.Fatal("a benign request no longer matches after a timeout")
	}
}

// One hostile request tested against many sessions' filters costs about
// one timeout, not one per filter.
func TestMatcherBudgetSpansFilters(t *testing.T) {
	var filters []*Filter
	for range 20 {
		f, err := Compile(Rule{Header: `^x-a: (a+)+$`})
		if err != nil {
			t.Fatal(err)
		}
		filters = append(filters, f)
	}
	req := Request{Method: "GET", Path: "/", Header: [][2]string{{"X-A", strings.Repeat("a", 40) + "!"}}}
	start := time.Now()
	m := NewMatcher(req)
	for _, f := range filters {
		if m.Match(f) {
			t.Fatal("a request whose test timed out matched")
		}
	}
	// 20 filters each timing out would take 1 s at least.
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("20 filters took %v", d)
	}
}
