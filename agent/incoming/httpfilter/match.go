package httpfilter

import "strings"

// Request is what a filter looks at, filled from an HTTP/1 head or an
// HTTP/2 HEADERS frame.
type Request struct {
	Method string
	// Path is the request path as received (not decoded), without the query.
	Path string
	// RawQuery is what follows "?" in the target, without the "?".
	RawQuery string
	// Header holds the fields in the order received, each {name, value}.
	Header [][2]string
}

// Match reports whether the request matches the filter.
//
// Once one regular-expression test runs out of time, the tests left in
// this call count as no match without running: a hostile request then
// costs one timeout, not one per header line and pattern.
func (f *Filter) Match(r Request) bool {
	return NewMatcher(r).Match(f)
}

// Matcher tests one request against several filters (the sessions of a
// port) with one time budget: once a test runs out of time, every test
// left for the request counts as no match, so that a hostile request costs
// one timeout however many sessions filter the port.
type Matcher struct{ m matcher }

// NewMatcher starts the tests of one request.
func NewMatcher(r Request) *Matcher { return &Matcher{matcher{req: &r}} }

// Match reports whether the request matches f.
func (m *Matcher) Match(f *Filter) bool { return m.m.match(f) }

type matcher struct {
	req      *Request
	timedOut bool
}

func (m *matcher) match(f *Filter) bool {
	switch f.kind {
	case kindMethod:
		return strings.EqualFold(m.req.Method, f.method)
	case kindHeader:
		for _, h := range m.req.Header {
			if m.test(f, h[0]+": "+h[1]) {
				return true
			}
		}
		return false
	case kindPath:
		if m.test(f, m.req.Path) {
			return true
		}
		return m.req.RawQuery != "" && m.test(f, m.req.Path+"?"+m.req.RawQuery)
	case kindAllOf:
		for _, sub := range f.subs {
			if !m.match(sub) {
				return false
			}
		}
		return true
	case kindAnyOf:
		for _, sub := range f.subs {
			if m.match(sub) {
				return true
			}
		}
	}
	return false
}

// test runs one regular expression; an error from regexp2 is a timeout.
func (m *matcher) test(f *Filter, s string) bool {
	if m.timedOut {
		return false
	}
	ok, err := f.re.MatchString(s)
	if err != nil {
		m.timedOut = true
		return false
	}
	return ok
}
