package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/doppel-dev/doppel/internal/netpipe"
)

// Server defaults.
const (
	DefaultKeepaliveTimeout = 30 * time.Second
	DefaultResumeGrace      = 15 * time.Second
	// DefaultMaxRequests bounds the control requests of one session being
	// worked on at once; the agent stops reading the control stream beyond
	// it, which pushes back on the helper through yamux's flow control.
	DefaultMaxRequests = 64
)

// Server is the agent side of the protocol: it authenticates helpers,
// keeps sessions (across transport drops, for ResumeGrace) and serves their
// requests and streams with Handler. Set the fields before Serve.
type Server struct {
	Handler Handler
	// TokenHashes are hashes of tokens accepted for the server's whole
	// life (the agent's --token-sha256).
	TokenHashes []TokenHash
	// AcceptedTokens, if set, is called on every hello for the hashes
	// accepted besides TokenHashes at that moment (the agent's
	// --token-file, which grows as sessions join a shared agent). It must
	// be safe for concurrent use. A session is bound to the hash it
	// started with, wherever that came from: a resume must present the
	// same token, and a hash that is no longer accepted admits no new
	// hello but does not end the sessions it started.
	AcceptedTokens func() []TokenHash
	AgentVersion   string
	// KeepaliveTimeout drops a transport on which the helper sent nothing
	// (no request, no ping, no new stream) for this long.
	KeepaliveTimeout time.Duration
	// ResumeGrace is how long a session outlives its transport, waiting
	// for the helper to reconnect and resume it.
	ResumeGrace time.Duration
	MaxStreams  int
	MaxRequests int
	Logger      *slog.Logger
	// OnSessionsChanged, if set, is called with the number of sessions the
	// server holds (connected or within their grace period) each time it
	// changes. Calls are serialized and in order.
	OnSessionsChanged func(n int)
	// OnSessionLost, if set, is called when a session's grace ends without
	// a resume (its helper is gone), before OnSessionsChanged.
	OnSessionLost func(id string)

	mu       sync.Mutex
	sessions map[string]*session
	conns    map[*serverConn]struct{}
	closed   bool
	notifyMu sync.Mutex
}

// session is the state that survives a transport drop.
type session struct {
	id     string
	token  TokenHash // the hash the session authenticated with
	client ClientInfo
	live   *serverConn // nil while detached
	grace  *time.Timer
	ended  bool // the helper closed it: no grace
	// started and info serve the incoming handler (who holds a port).
	started time.Time
	info    *SessionInfo
}

// Serve accepts connections on l until ctx is done, serving each in its own
// goroutine. It closes l and every connection before returning.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer s.shutdown()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if netpipe.IsTimeout(err) {
				continue
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.ServeConn(ctx, conn); err != nil {
				s.logger().Debug("connection ended", "remote", conn.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// shutdown refuses new sessions and drops every transport and session.
func (s *Server) shutdown() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	var gone []string
	for id, sess := range s.sessions {
		if sess.grace != nil {
			sess.grace.Stop()
		}
		delete(s.sessions, id)
		gone = append(gone, id)
	}
	s.mu.Unlock()
	for _, id := range gone {
		s.sessionGone(id)
	}
	for _, c := range conns {
		c.mux.Close()
	}
	s.notify()
}

// ServeConn serves one helper connection until it ends.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) error {
	// A yamux session starts with its version, 0; a bulk connection with
	// joinPreface.
	conn.SetReadDeadline(time.Now().Add(helloTimeout))
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		conn.Close()
		return fmt.Errorf("waiting for hello: %w", err)
	}
	if first[0] == joinPreface[0] {
		rest := make([]byte, len(joinPreface)-1) // within the same deadline
		if _, err := io.ReadFull(conn, rest); err != nil || string(first[:])+string(rest) != joinPreface {
			conn.Close()
			return fmt.Errorf("neither a yamux session nor a bulk connection (%q %v)", string(first[:])+string(rest), err)
		}
		return s.serveJoin(conn)
	}
	conn.SetReadDeadline(time.Time{})
	mux, wire, err := newMux(conn, first[:], false, s.Logger)
	if err != nil {
		conn.Close()
		return err
	}
	defer mux.Close()
	ctrl, hello, err := s.readHello(ctx, mux)
	if err != nil {
		return err
	}
	c := &serverConn{srv: s, mux: mux, wire: wire, ctrl: ctrl, streams: map[uint32]*dataStream{}, relays: map[uint32]*tcpRelay{}}
	sess, reply := s.admit(hello, c)
	reply.Protocol = Version
	if reply.Error == nil {
		reply.AgentVersion = s.AgentVersion
		reply.KeepaliveMS = s.keepaliveTimeout().Milliseconds()
		reply.Features = []string{FeatureBulk}
	}
	ctrl.SetWriteDeadline(time.Now().Add(helloTimeout))
	werr := writeMessage(ctrl, reply, MaxHeaderSize)
	ctrl.SetDeadline(time.Time{})
	if reply.Error != nil {
		s.logger().Info("refused a helper", "remote", conn.RemoteAddr().String(),
			"session", hello.SessionID, "client", hello.Client, "reason", reply.Error.Message)
		// Let the helper read the refusal before the connection goes: a
		// close with unread input would reset it and could lose the reply.
		select {
		case <-mux.CloseChan():
		case <-time.After(time.Second):
		}
		return fmt.Errorf("refused: %s", reply.Error.Message)
	}
	if werr != nil {
		s.detach(sess, c)
		return werr
	}
	c.log = s.logger().With("session", sess.id)
	c.log.Info("session attached", "resumed", reply.Resumed, "user", hello.Client.User,
		"host", hello.Client.Host, "pid", hello.Client.PID, "version", hello.Client.Version)
	err = c.serve(ctx)
	s.detach(sess, c)
	return err
}

// readHello accepts the first stream and reads the hello on it, within
// helloTimeout.
func (s *Server) readHello(ctx context.Context, mux *yamux.Session) (*yamux.Stream, *Hello, error) {
	actx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	ctrl, err := mux.AcceptStreamWithContext(actx)
	if err != nil {
		return nil, nil, fmt.Errorf("waiting for hello: %w", err)
	}
	ctrl.SetDeadline(time.Now().Add(helloTimeout))
	var hello Hello
	if err := readMessage(ctrl, &hello, MaxHeaderSize); err != nil {
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrMessageTooLarge) {
			writeMessage(ctrl, HelloReply{Protocol: Version,
				Error: codeError(CodeBadRequest, "bad hello: %v", err)}, MaxHeaderSize)
		}
		return nil, nil, fmt.Errorf("reading hello: %w", err)
	}
	return ctrl, &hello, nil
}

// admit decides on a hello: a new session, a resumed one, or a refusal.
func (s *Server) admit(h *Hello, c *serverConn) (*session, HelloReply) {
	// The token is checked first so that nothing about sessions leaks to
	// a peer without one.
	hashes := s.TokenHashes
	if s.AcceptedTokens != nil {
		hashes = append(slices.Clip(hashes), s.AcceptedTokens()...)
	}
	token, ok := matchToken(hashes, h.Token)
	if !ok {
		return nil, HelloReply{Error: codeError(CodeUnauthorized, "the session token does not match this agent's")}
	}
	if h.Protocol != Version {
		return nil, HelloReply{Error: codeError(CodeVersion,
			"the helper speaks protocol version %d, this agent (%s) speaks version %d: use a doppel release that matches the agent",
			h.Protocol, s.AgentVersion, Version)}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, HelloReply{Error: codeError(CodeShuttingDown, "the agent is shutting down")}
	}
	if s.sessions == nil {
		s.sessions = map[string]*session{}
		s.conns = map[*serverConn]struct{}{}
	}
	sess := s.sessions[h.SessionID]
	var reply HelloReply
	var kick *serverConn
	switch {
	case sess != nil && !sameHash(sess.token, token):
		s.mu.Unlock()
		return nil, HelloReply{Error: codeError(CodeSessionInUse, "session %q belongs to another token", h.SessionID)}
	case h.Resume && sess == nil:
		s.mu.Unlock()
		return nil, HelloReply{Error: codeError(CodeUnknownSession,
			"session %q is unknown to this agent (its grace period of %s passed, or the agent restarted): start a new session",
			h.SessionID, s.resumeGrace())}
	case !h.Resume && sess != nil && sess.live != nil:
		s.mu.Unlock()
		return nil, HelloReply{Error: codeError(CodeSessionInUse, "session %q is connected: resume it or use a new id", h.SessionID)}
	case h.Resume:
		// The old transport may not look dead yet (a half-open TCP
		// connection after a port-forward broke): the helper knows better.
		kick = sess.live
		reply.Resumed = true
	default:
		if sess != nil && sess.grace != nil {
			sess.grace.Stop()
		}
		if sess != nil {
			// Started afresh: the old one's subscriptions go.
			defer s.sessionGone(sess.id)
		}
		sess = &session{id: h.SessionID, token: token, started: time.Now()}
		s.sessions[sess.id] = sess
	}
	if sess.grace != nil {
		sess.grace.Stop()
		sess.grace = nil
	}
	sess.client = h.Client
	sess.live = c
	c.sess = sess
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	if kick != nil {
		kick.mux.Close()
	}
	s.notify()
	return sess, reply
}

// detach ends c's hold on sess: the session waits ResumeGrace for a
// resume, or goes at once if the helper closed it.
func (s *Server) detach(sess *session, c *serverConn) {
	s.mu.Lock()
	delete(s.conns, c)
	if sess.live != c || s.sessions[sess.id] != sess {
		// Resumed on another transport meanwhile, or dropped by shutdown.
		s.mu.Unlock()
		return
	}
	sess.live = nil
	if sess.ended || s.closed {
		delete(s.sessions, sess.id)
		s.mu.Unlock()
		s.sessionGone(sess.id)
		s.logger().Info("session ended", "session", sess.id)
		s.notify()
		return
	}
	grace := s.resumeGrace()
	sess.grace = time.AfterFunc(grace, func() {
		s.mu.Lock()
		expired := sess.live == nil && s.sessions[sess.id] == sess
		if expired {
			delete(s.sessions, sess.id)
		}
		s.mu.Unlock()
		if expired {
			s.sessionGone(sess.id)
			s.logger().Info("session expired: no resume within the grace period", "session", sess.id, "grace", grace)
			if s.OnSessionLost != nil {
				s.OnSessionLost(sess.id)
			}
			s.notify()
		}
	})
	s.mu.Unlock()
	s.logger().Info("session detached: waiting for a resume", "session", sess.id, "grace", grace)
}

// StopIfIdle makes the server refuse every later hello with
// shutting_down, if it holds no session, and reports whether it did. The
// check and the refusal are one step: a helper joining an agent that is
// about to exit idle either gets its session first (and the agent stays)
// or is told the agent is going — never a session that ends at once.
// Serve still has to be stopped (its context) to drop the listener.
func (s *Server) StopIfIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) > 0 {
		return false
	}
	s.closed = true
	return true
}

// Sessions returns the number of sessions held, connected or in grace.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Server) notify() {
	if s.OnSessionsChanged == nil {
		return
	}
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	s.OnSessionsChanged(s.Sessions())
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) keepaliveTimeout() time.Duration {
	if s.KeepaliveTimeout > 0 {
		return s.KeepaliveTimeout
	}
	return DefaultKeepaliveTimeout
}

func (s *Server) resumeGrace() time.Duration {
	if s.ResumeGrace > 0 {
		return s.ResumeGrace
	}
	return DefaultResumeGrace
}

func (s *Server) maxStreams() int {
	if s.MaxStreams > 0 {
		return s.MaxStreams
	}
	return DefaultMaxStreams
}

func (s *Server) maxRequests() int {
	if s.MaxRequests > 0 {
		return s.MaxRequests
	}
	return DefaultMaxRequests
}
