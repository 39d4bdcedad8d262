package incoming

import (
	"errors"
	"testing"

	"github.com/doppel-dev/doppel/agent/incoming/httpfilter"
	"github.com/doppel-dev/doppel/protocol"
)

type fakeSession string

func (f fakeSession) SessionID() string { return string(f) }
func (f fakeSession) Describe() string  { return "ana@laptop, since 10:00:00 UTC (" + string(f) + ")" }

func filter(t *testing.T, r httpfilter.Rule) *httpfilter.Filter {
	f, err := httpfilter.Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestTableSteals(t *testing.T) {
	tb := newTable()
	if isNew, _, err := tb.add(80, &sub{sess: fakeSession("a"), mode: protocol.ModeSteal}, false); err != nil || !isNew {
		t.Fatalf("first steal: new=%v err=%v", isNew, err)
	}
	// A second unfiltered steal is refused, naming the first session.
	_, _, err := tb.add(80, &sub{sess: fakeSession("b"), mode: protocol.ModeSteal}, false)
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Other != fakeSession("a").Describe() {
		t.Fatalf("second steal: %v", err)
	}
	// Mirrors and filtered steals may join; an override takes the port.
	if _, _, err := tb.add(80, &sub{sess: fakeSession("m"), mode: protocol.ModeMirror}, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tb.add(80, &sub{sess: fakeSession("f"), mode: protocol.ModeSteal, filter: filter(t, httpfilter.Rule{Path: "^/f"})}, false); err != nil {
		t.Fatal(err)
	}
	_, over, err := tb.add(80, &sub{sess: fakeSession("b"), mode: protocol.ModeSteal}, true)
	if err != nil || over == nil || over.SessionID() != "a" {
		t.Fatalf("override: %v %v", over, err)
	}
	rt := tb.route(80)
	if rt.steal == nil || rt.steal.sess.SessionID() != "b" || len(rt.mirrors) != 1 || len(rt.filtered) != 1 {
		t.Fatalf("route after override: %+v", rt)
	}
	// The port stays while any session holds it.
	for _, id := range []string{"b", "m"} {
		if tb.remove(80, id) {
			t.Fatalf("port emptied after removing %s", id)
		}
	}
	if empty := tb.removeSession("f"); len(empty) != 1 || empty[0] != 80 {
		t.Fatalf("removeSession: %v", empty)
	}
	if rt := tb.route(80); rt.steal != nil || rt.mirrors != nil || rt.filtered != nil {
		t.Fatalf("route of an empty port: %+v", rt)
	}
}

func TestTableFilterOrder(t *testing.T) {
	tb := newTable()
	alice := filter(t, httpfilter.Rule{Header: "^x-user: alice$"})
	api := filter(t, httpfilter.Rule{Path: "^/api/"})
	tb.add(80, &sub{sess: fakeSession("alice"), mode: protocol.ModeSteal, filter: alice}, false)
	tb.add(80, &sub{sess: fakeSession("api"), mode: protocol.ModeSteal, filter: api}, false)
	for _, c := range []struct {
		req  httpfilter.Request
		want string
	}{
		{httpfilter.Request{Method: "GET", Path: "/api/x", Header: [][2]string{{"X-User", "alice"}}}, "alice"}, // both: the earlier
		{httpfilter.Request{Method: "GET", Path: "/api/x"}, "api"},
		{httpfilter.Request{Method: "GET", Path: "/x", Header: [][2]string{{"X-User", "bob"}}}, ""},
	} {
		got := ""
		if s := tb.match(80, c.req); s != nil {
			got = s.sess.SessionID()
		}
		if got != c.want {
			t.Errorf("%+v went to %q, want %q", c.req, got, c.want)
		}
	}
	// Re-subscribing moves a session to the back of the order.
	tb.add(80, &sub{sess: fakeSession("alice"), mode: protocol.ModeSteal, filter: alice}, false)
	if s := tb.match(80, httpfilter.Request{Path: "/api/x", Header: [][2]string{{"X-User", "alice"}}}); s.sess.SessionID() != "api" {
		t.Errorf("after re-subscribing, the earlier subscriber is %s", s.sess.SessionID())
	}
}

func TestCompileRule(t *testing.T) {
	f, err := compileRule(&protocol.HTTPFilter{AnyOf: []protocol.HTTPFilter{{Method: "POST"}, {AllOf: []protocol.HTTPFilter{{Path: "^/a"}, {Header: "^x: 1$"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Match(httpfilter.Request{Method: "POST", Path: "/"}) || !f.Match(httpfilter.Request{Method: "GET", Path: "/a", Header: [][2]string{{"x", "1"}}}) ||
		f.Match(httpfilter.Request{Method: "GET", Path: "/a"}) {
		t.Error("nested rule converted wrongly")
	}
	if _, err := compileRule(&protocol.HTTPFilter{Path: "(("}); err == nil {
		t.Error("a bad pattern compiled")
	}
}

// While a session is paused in a debugger, its unfiltered steal takes no
// new connection: they go to the filtered steals, or the pod's server.
// Filtered steals and mirrors of a paused session are unchanged.
func TestTablePause(t *testing.T) {
	tb := newTable()
	f := filter(t, httpfilter.Rule{Path: "^/f"})
	for _, s := range []*sub{
		{sess: fakeSession("a"), mode: protocol.ModeSteal},
		{sess: fakeSession("b"), mode: protocol.ModeSteal, filter: f},
		{sess: fakeSession("m"), mode: protocol.ModeMirror},
	} {
		if _, _, err := tb.add(80, s, false); err != nil {
			t.Fatal(err)
		}
	}
	tb.setPaused("a", true)
	tb.setPaused("b", true)
	tb.setPaused("m", true)
	if rt := tb.route(80); rt.steal != nil || len(rt.filtered) != 1 || len(rt.mirrors) != 1 {
		t.Fatalf("route while paused: %+v", rt)
	}
	tb.setPaused("a", false)
	if rt := tb.route(80); rt.steal == nil || rt.steal.sess.SessionID() != "a" {
		t.Fatalf("route after continue: %+v", rt)
	}
}
