package incoming

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/doppel-dev/doppel/agent/incoming/httpfilter"
	"github.com/doppel-dev/doppel/protocol"
)

// Session is what the table needs of a session: who it is, and how to
// hand it a connection (protocol.SessionInfo in the agent).
type Session interface {
	SessionID() string
	Describe() string // "USER@HOST, since 15:04:05" for conflict errors
}

// sub is one session's subscription of one port.
type sub struct {
	sess   Session
	mode   string             // protocol.ModeMirror or ModeSteal
	filter *httpfilter.Filter // a filtered steal; nil otherwise
	since  time.Time
	seq    uint64 // subscription order: the earlier subscriber wins a request
}

// ConflictError refuses an unfiltered steal of a port another session
// steals.
type ConflictError struct {
	Port  uint16
	Other string // the other session, described
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("port %d is already stolen without a filter by another session (%s): use an http_filter, mirror, "+
		"or set on_concurrent_steal to \"override\" to take it over", e.Port, e.Other)
}

// table holds the subscriptions of every port.
type table struct {
	mu     sync.Mutex
	seq    uint64
	ports  map[uint16][]*sub // in subscription order
	paused map[string]bool   // sessions paused in a debugger
}

func newTable() *table { return &table{ports: map[uint16][]*sub{}, paused: map[string]bool{}} }

// setPaused marks session id paused in a debugger, or running.
func (t *table) setPaused(id string, paused bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if paused {
		t.paused[id] = true
	} else {
		delete(t.paused, id)
	}
}

// add subscribes s to port, replacing s's earlier subscription of it. An
// unfiltered steal conflicts with another session's; override takes it
// over. It returns whether the port was new to the table, and the session
// whose steal was overridden, if any.
func (t *table) add(port uint16, s *sub, override bool) (isNew bool, overridden Session, err error) {
	isNew, overridden, _, err = t.addUndoable(port, s, override)
	return isNew, overridden, err
}

// addUndoable is add, and undo takes s out again and gives back what it
// replaced (the session's earlier subscription, an overridden steal),
// unless their sessions subscribed the port again meanwhile.
func (t *table) addUndoable(port uint16, s *sub, override bool) (isNew bool, overridden Session, undo func(), err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	subs := t.ports[port]
	isNew = len(subs) == 0
	var replaced []*sub
	subs = slices.DeleteFunc(slices.Clone(subs), func(o *sub) bool {
		if o.sess.SessionID() == s.sess.SessionID() {
			replaced = append(replaced, o)
			return true
		}
		return false
	})
	if s.mode == protocol.ModeSteal && s.filter == nil {
		for i, o := range subs {
			if o.mode == protocol.ModeSteal && o.filter == nil {
				if !override {
					return false, nil, nil, &ConflictError{Port: port, Other: o.sess.Describe()}
				}
				overridden = o.sess
				replaced = append(replaced, o)
				subs = slices.Delete(subs, i, i+1)
				break
			}
		}
	}
	t.seq++
	s.seq = t.seq
	t.ports[port] = append(subs, s)
	undo = func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if !slices.Contains(t.ports[port], s) {
			return // replaced meanwhile
		}
		subs := slices.DeleteFunc(slices.Clone(t.ports[port]), func(o *sub) bool { return o == s })
		for _, r := range replaced {
			if !slices.ContainsFunc(subs, func(o *sub) bool { return o.sess.SessionID() == r.sess.SessionID() }) {
				subs = append(subs, r)
			}
		}
		slices.SortFunc(subs, func(a, b *sub) int { return cmp.Compare(a.seq, b.seq) }) // earliest first, as before
		if len(subs) == 0 {
			delete(t.ports, port)
		} else {
			t.ports[port] = subs
		}
	}
	return isNew, overridden, undo, nil
}

// remove ends id's subscription of port, and reports whether the port has
// none left.
func (t *table) remove(port uint16, id string) (empty bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	subs, ok := t.ports[port]
	if !ok {
		return false
	}
	subs = slices.DeleteFunc(slices.Clone(subs), func(o *sub) bool { return o.sess.SessionID() == id })
	if len(subs) == 0 {
		delete(t.ports, port)
		return true
	}
	t.ports[port] = subs
	return false
}

// mirrorOnly reports whether port has subscriptions (any) and whether
// they are all mirrors.
func (t *table) mirrorOnly(port uint16) (mirrorOnly, any bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	subs := t.ports[port]
	for _, s := range subs {
		if s.mode != protocol.ModeMirror {
			return false, true
		}
	}
	return len(subs) > 0, len(subs) > 0
}

// removeSession ends every subscription of id and returns the ports it
// had (some may have other subscriptions left).
func (t *table) removeSession(id string) (had []uint16) {
	t.mu.Lock()
	for p, subs := range t.ports {
		if slices.ContainsFunc(subs, func(s *sub) bool { return s.sess.SessionID() == id }) {
			had = append(had, p)
		}
	}
	t.mu.Unlock()
	for _, p := range had {
		t.remove(p, id)
	}
	return had
}

// route is the subscriptions of one port at the moment a connection came.
type route struct {
	mirrors  []*sub
	steal    *sub   // the unfiltered steal
	filtered []*sub // filtered steals, earliest first
}

func (t *table) route(port uint16) route {
	t.mu.Lock()
	defer t.mu.Unlock()
	var r route
	for _, s := range t.ports[port] {
		switch {
		case s.mode == protocol.ModeMirror:
			r.mirrors = append(r.mirrors, s)
		case s.filter == nil:
			// A paused session's unfiltered steal does not take new
			// connections: they go to the pod's server (or to the
			// filtered steals), so a breakpoint blocks nobody else.
			if !t.paused[s.sess.SessionID()] {
				r.steal = s
			}
		default:
			r.filtered = append(r.filtered, s)
		}
	}
	return r
}

// match returns the earliest filtered steal of port that matches req, as
// the table is now: each request of a keep-alive connection is routed anew,
// so that a session that ended or left the port gets no more of them.
func (t *table) match(port uint16, req httpfilter.Request) *sub {
	t.mu.Lock()
	subs := t.ports[port] // add and remove replace it, never change it
	t.mu.Unlock()
	m := httpfilter.NewMatcher(req)
	for _, s := range subs {
		if s.filteredSteal() && m.Match(s.filter) {
			return s
		}
	}
	return nil
}

// filteredSteal: a steal of the requests the filter matches (a mirror may
// carry a filter too, and takes nothing).
func (s *sub) filteredSteal() bool { return s.mode != protocol.ModeMirror && s.filter != nil }

// filtering reports whether session id still has a filtered steal of port.
func (t *table) filtering(port uint16, id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.ContainsFunc(t.ports[port], func(s *sub) bool { return s.filteredSteal() && s.sess.SessionID() == id })
}

// compileRule turns the wire filter into a compiled one.
func compileRule(f *protocol.HTTPFilter) (*httpfilter.Filter, error) {
	if f == nil {
		return nil, nil
	}
	return httpfilter.Compile(ruleOf(*f))
}

func ruleOf(f protocol.HTTPFilter) httpfilter.Rule {
	r := httpfilter.Rule{Header: f.Header, Path: f.Path, Method: f.Method}
	for _, s := range f.AllOf {
		r.AllOf = append(r.AllOf, ruleOf(s))
	}
	for _, s := range f.AnyOf {
		r.AnyOf = append(r.AnyOf, ruleOf(s))
	}
	return r
}
