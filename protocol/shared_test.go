package protocol

import (
	"errors"
	"sync"
	"testing"
)

// tokenSet is a changing set of accepted hashes, as the agent's
// --token-file is.
type tokenSet struct {
	mu     sync.Mutex
	hashes []TokenHash
	calls  int
}

func (s *tokenSet) get() []TokenHash {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return append([]TokenHash(nil), s.hashes...)
}

// count is how many times get was called (under the lock: the server
// calls get on its own goroutines, which a TCP round trip does not order
// for the race detector).
func (s *tokenSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *tokenSet) set(h ...TokenHash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hashes = h
}

func TestAcceptedTokens(t *testing.T) {
	set := &tokenSet{}
	a := startAgent(t, func(s *Server) { s.AcceptedTokens = set.get })
	ctx := testCtx(t)

	// The static hash (the creator's) works; a second token not yet.
	c1 := a.client(t)
	second := NewToken()
	h2 := a.hello("second")
	h2.Token = second
	if _, err := a.dial(t, h2); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("unknown token: %v", err)
	}
	// The set is consulted on each hello: once the hash is added, the
	// same hello is accepted.
	set.set(HashToken(NewToken()), HashToken(second))
	c2, err := a.dial(t, h2)
	if err != nil {
		t.Fatalf("added token: %v", err)
	}
	defer c2.Close()
	if _, err := c2.Env(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Env(ctx); err != nil {
		t.Fatal(err)
	}

	// A session is bound to the hash it started with: resuming it with
	// another accepted token is refused, with the right one accepted.
	steal := h2
	steal.Token = a.token
	steal.Resume = true
	if _, err := a.dial(t, steal); !errors.Is(err, ErrSessionInUse) {
		t.Errorf("resume with another accepted token: %v", err)
	}
	steal.Resume = false
	if _, err := a.dial(t, steal); !errors.Is(err, ErrSessionInUse) {
		t.Errorf("new hello on another token's session: %v", err)
	}
	c2.mux.Close() // a drop: the session waits for its resume
	waitFor(t, func() bool { return a.srv.connCount() == 1 })
	steal.Resume = true
	if _, err := a.dial(t, steal); !errors.Is(err, ErrSessionInUse) {
		t.Errorf("resume of a detached session with another token: %v", err)
	}
	resume := h2
	resume.Resume = true
	c3, err := a.dial(t, resume)
	if err != nil || !c3.Resumed() {
		t.Fatalf("resume with its own token: %v", err)
	}

	// A hash that leaves the set admits no new hello, but its session
	// goes on.
	set.set()
	if _, err := a.dial(t, a.hello("third")); err != nil {
		t.Errorf("the static hash stopped working: %v", err)
	}
	h4 := h2
	h4.SessionID = "fourth"
	if _, err := a.dial(t, h4); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("removed token: %v", err)
	}
	if _, err := c3.Env(ctx); err != nil {
		t.Errorf("session of a removed token: %v", err)
	}
	c3.Close()

	// Without any static hash, the set alone decides.
	set2 := &tokenSet{}
	b := startAgent(t, func(s *Server) { s.TokenHashes = nil; s.AcceptedTokens = set2.get })
	if _, err := b.dial(t, b.hello("x")); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("empty set: %v", err)
	}
	set2.set(HashToken(b.token))
	c5, err := b.dial(t, b.hello("x"))
	if err != nil {
		t.Fatal(err)
	}
	c5.Close()
	if n := set2.count(); n != 2 {
		t.Errorf("AcceptedTokens called %d times for 2 hellos", n)
	}
}

func TestStopIfIdle(t *testing.T) {
	a := startAgent(t, nil)
	c1 := a.client(t)
	if a.srv.StopIfIdle() {
		t.Fatal("stopped with a session")
	}
	c2, err := a.dial(t, a.hello("another"))
	if err != nil {
		t.Fatalf("hello after a refused stop: %v", err)
	}
	c1.Close()
	c2.Close()
	waitFor(t, func() bool { return a.srv.Sessions() == 0 })
	if !a.srv.StopIfIdle() {
		t.Fatal("did not stop when idle")
	}
	if _, err := a.dial(t, a.hello("late")); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("hello after the stop: %v", err)
	}
}
