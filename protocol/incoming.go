package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/doppel-dev/doppel/internal/netpipe"
)

// Incoming traffic (SPEC.md §8): the helper subscribes the target's ports
// on the control stream; the agent opens a data stream to the helper for
// each connection (or HTTP request) it hands over.

// Operations and agent-opened stream kinds of incoming traffic.
const (
	OpSubscribe   = "subscribe"
	OpUnsubscribe = "unsubscribe"
	OpPause       = "debuggee_paused"

	StreamIncoming = "incoming" // a connection or request for the local process
	StreamAbort    = "abort"    // tear down the incoming stream Stream at once
)

// Subscription modes, and the mode of an incoming stream.
const (
	ModeMirror  = "mirror"  // a copy of the inbound bytes; answers are dropped
	ModeSteal   = "steal"   // the connection itself
	ModeRequest = "request" // one HTTP request a filter matched (filtered steal)
)

// CodeConflict refuses a subscription that clashes with another session's.
const CodeConflict = "conflict"

// HTTPFilter selects HTTP requests: exactly one of its fields is set.
// Patterns are case-insensitive regular expressions with look-around
// (mirrord's syntax); Header matches "Name: value" lines, Path the path
// without and with its query.
type HTTPFilter struct {
	Header string       `json:"header,omitempty"`
	Path   string       `json:"path,omitempty"`
	Method string       `json:"method,omitempty"`
	AllOf  []HTTPFilter `json:"all_of,omitempty"`
	AnyOf  []HTTPFilter `json:"any_of,omitempty"`
}

// SubscribeArgs subscribes the target's TCP port Port for the session.
type SubscribeArgs struct {
	Port uint16 `json:"port"`
	Mode string `json:"mode"` // mirror or steal
	// Filter makes a steal a filtered steal: only matching HTTP requests.
	Filter *HTTPFilter `json:"filter,omitempty"`
	// Flush resets the port's existing connections, so that keep-alive
	// clients reconnect and are redirected.
	Flush bool `json:"flush,omitempty"`
	// Override takes an unfiltered steal over from another session.
	Override bool `json:"override,omitempty"`
}

// SubscribeResult answers subscribe.
type SubscribeResult struct {
	// Warnings for the user (an unfiltered steal of the probe port).
	Warnings []string `json:"warnings,omitempty"`
}

// UnsubscribeArgs ends the session's subscription of Port.
type UnsubscribeArgs struct {
	Port uint16 `json:"port"`
}

// PauseArgs says whether the session's local process is paused in a
// debugger. While it is, new connections of the session's unfiltered steals
// go to the target's own server (SPEC.md §10); filtered steals and mirrors
// are unchanged.
type PauseArgs struct {
	Paused bool `json:"paused"`
}

// IncomingHeader is the first message on a stream the agent opens.
type IncomingHeader struct {
	Kind string `json:"kind"`
	// incoming: the target's port, the mode, and the connection's client
	// (Remote) and original destination (Local) as the pod saw them.
	Port   uint16 `json:"port,omitempty"`
	Mode   string `json:"mode,omitempty"`
	Remote string `json:"remote,omitempty"`
	Local  string `json:"local,omitempty"`
	// abort: the yamux id of the incoming stream to tear down, and why if
	// the user should hear of it (ReasonMirrorOverflow,
	// ReasonMirrorIncomplete).
	Stream uint32 `json:"stream,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// ReasonMirrorOverflow: the agent dropped a mirrored connection because
// the local process read its copy too slowly (the agent never slows the
// pod's traffic down for a mirror).
const ReasonMirrorOverflow = "mirror_overflow"

// ReasonMirrorIncomplete: the agent dropped a mirrored connection because
// it could not capture all of its bytes (the node dropped segments before
// the agent took them, or one was too large to capture whole).
const ReasonMirrorIncomplete = "mirror_incomplete"

// IncomingReply answers an incoming header once the helper reached (or
// failed to reach) the local process.
type IncomingReply struct {
	Error *Error `json:"error,omitempty"`
}

func (h *IncomingHeader) validate() error {
	switch h.Kind {
	case StreamIncoming:
		if h.Port == 0 || (h.Mode != ModeMirror && h.Mode != ModeSteal && h.Mode != ModeRequest) {
			return fmt.Errorf("incoming stream needs a port and a mode")
		}
	case StreamAbort:
		if h.Stream == 0 {
			return fmt.Errorf("abort stream needs a stream id")
		}
	default:
		return fmt.Errorf("unknown agent stream kind %q", h.Kind)
	}
	return nil
}

func (a *SubscribeArgs) validate() error {
	if a.Port == 0 {
		return errors.New("port 0")
	}
	if a.Mode != ModeMirror && a.Mode != ModeSteal {
		return fmt.Errorf("mode %q: use mirror or steal", a.Mode)
	}
	if a.Filter != nil && a.Mode != ModeSteal {
		return errors.New("a filter needs mode steal")
	}
	return nil
}

// SessionInfo is what an IncomingHandler knows of a session, and its way
// to hand connections over to the helper.
type SessionInfo struct {
	ID      string
	Client  ClientInfo
	Started time.Time

	srv  *Server
	sess *session
}

// IncomingHandler is implemented by a Handler that serves incoming
// traffic. Subscriptions are session state: they survive transport drops
// and end with the session (SessionGone).
type IncomingHandler interface {
	Subscribe(ctx context.Context, s *SessionInfo, args SubscribeArgs) (SubscribeResult, error)
	Unsubscribe(ctx context.Context, s *SessionInfo, port uint16) error
	// Pause marks the session's local process paused (or running again):
	// session state, like subscriptions.
	Pause(ctx context.Context, s *SessionInfo, paused bool) error
	SessionGone(id string)
}

// ErrDetached is returned by OpenIncoming while the session has no
// transport (between a drop and its resume).
var ErrDetached = errors.New("the session's helper is not connected")

// OpenIncoming opens a stream to the session's helper for one incoming
// connection or request and waits until the helper reached the local
// process. The returned conn's Close tears the helper's side down too.
func (si *SessionInfo) OpenIncoming(ctx context.Context, hdr IncomingHeader) (net.Conn, error) {
	si.srv.mu.Lock()
	c := si.sess.live
	si.srv.mu.Unlock()
	if c == nil {
		return nil, ErrDetached
	}
	hdr.Kind = StreamIncoming
	st, err := c.mux.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDetached, err)
	}
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Unix(1, 0)) })
	st.SetDeadline(time.Now().Add(helloTimeout))
	var reply IncomingReply
	err = writeMessage(st, &hdr, MaxHeaderSize)
	if err == nil {
		err = readMessage(st, &reply, MaxHeaderSize)
	}
	if !stop() {
		err = ctx.Err()
	}
	st.SetDeadline(time.Time{})
	if err == nil && reply.Error != nil {
		err = remoteError("incoming", reply.Error)
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	ic := &IncomingConn{st: st, c: c, port: hdr.Port}
	if hdr.Mode == ModeMirror {
		// Nobody waits for a copy: its frames may wait for company.
		ic.deferred = true
		c.wire.Defer(st.StreamID(), true)
	}
	return ic, nil
}

// IncomingConn is the agent's side of an incoming stream.
type IncomingConn struct {
	st   *yamux.Stream
	c    *serverConn
	port uint16
	// deferred: the stream's data frames may wait (wire.Defer).
	deferred bool

	mu      sync.Mutex
	readEOF bool
	closed  bool
}

func (ic *IncomingConn) Read(b []byte) (int, error) {
	n, err := ic.st.Read(b)
	err = streamEOF(ic.c.mux, err)
	if err == io.EOF {
		ic.mu.Lock()
		ic.readEOF = true
		ic.mu.Unlock()
	}
	return n, err
}

func (ic *IncomingConn) Write(b []byte) (int, error) {
	n, err := ic.st.Write(b)
	if errors.Is(err, yamux.ErrStreamClosed) {
		err = syscall.EPIPE
	}
	return n, err
}

// CloseWrite half-closes: the local process reads EOF.
func (ic *IncomingConn) CloseWrite() error { return ic.st.Close() }

// Close closes both ways; unless the helper's side had finished, it is
// told to drop its local connection at once (an abort stream).
func (ic *IncomingConn) Close() error { return ic.Abort("") }

// Abort is Close telling the helper why (ReasonMirrorOverflow), even if
// its side had finished.
func (ic *IncomingConn) Abort(reason string) error {
	ic.mu.Lock()
	if ic.closed {
		ic.mu.Unlock()
		return nil
	}
	ic.closed = true
	needAbort := !ic.readEOF || reason != ""
	ic.mu.Unlock()
	ic.st.Close() // its FIN sends the deferred frames before it
	if ic.deferred {
		ic.c.wire.Defer(ic.st.StreamID(), false)
	}
	if needAbort {
		go ic.c.sendAbort(&IncomingHeader{Kind: StreamAbort, Stream: ic.st.StreamID(), Port: ic.port, Reason: reason})
	}
	return nil
}

func (ic *IncomingConn) LocalAddr() net.Addr                { return ic.st.LocalAddr() }
func (ic *IncomingConn) RemoteAddr() net.Addr               { return ic.st.RemoteAddr() }
func (ic *IncomingConn) SetDeadline(t time.Time) error      { return ic.st.SetDeadline(t) }
func (ic *IncomingConn) SetReadDeadline(t time.Time) error  { return ic.st.SetReadDeadline(t) }
func (ic *IncomingConn) SetWriteDeadline(t time.Time) error { return ic.st.SetWriteDeadline(t) }

// sendAbort tells the helper to drop the local side of an incoming stream.
func (c *serverConn) sendAbort(hdr *IncomingHeader) {
	st, err := c.mux.OpenStream()
	if err != nil {
		return
	}
	defer st.Close()
	st.SetWriteDeadline(time.Now().Add(helloTimeout))
	writeMessage(st, hdr, MaxHeaderSize)
}

// dispatchIncoming runs subscribe, unsubscribe and pause.
func (c *serverConn) dispatchIncoming(ctx context.Context, req *Request) (any, error) {
	ih, ok := c.srv.Handler.(IncomingHandler)
	if !ok {
		return nil, &RemoteError{Code: CodeUnknownOp, Errno: syscall.ENOSYS, Message: "this agent does not serve incoming traffic"}
	}
	si := c.srv.sessionInfo(c.sess)
	switch req.Op {
	case OpSubscribe:
		var args SubscribeArgs
		if err := parseArgs(req, &args); err != nil {
			return nil, err
		}
		if err := args.validate(); err != nil {
			return nil, badRequest("subscribe: %v", err)
		}
		return ih.Subscribe(ctx, si, args)
	case OpPause:
		var args PauseArgs
		if err := parseArgs(req, &args); err != nil {
			return nil, err
		}
		return Empty{}, ih.Pause(ctx, si, args.Paused)
	default:
		var args UnsubscribeArgs
		if err := parseArgs(req, &args); err != nil {
			return nil, err
		}
		return Empty{}, ih.Unsubscribe(ctx, si, args.Port)
	}
}

// sessionInfo returns the handler's view of sess.
func (s *Server) sessionInfo(sess *session) *SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.info == nil {
		sess.info = &SessionInfo{ID: sess.id, Client: sess.client, Started: sess.started, srv: s, sess: sess}
	}
	return sess.info
}

// sessionGone tells the incoming handler a session ended.
func (s *Server) sessionGone(id string) {
	if ih, ok := s.Handler.(IncomingHandler); ok {
		ih.SessionGone(id)
	}
}

// IncomingFunc reaches the local process for an incoming stream: it
// returns the local connection, or an error the agent is told.
type IncomingFunc func(ctx context.Context, hdr IncomingHeader) (net.Conn, error)

// Subscribe subscribes the target's port for this session.
func (c *Client) Subscribe(ctx context.Context, args SubscribeArgs) (SubscribeResult, error) {
	var res SubscribeResult
	err := c.call(ctx, OpSubscribe, args, &res)
	return res, err
}

// Unsubscribe ends the subscription of port.
func (c *Client) Unsubscribe(ctx context.Context, port uint16) error {
	return c.call(ctx, OpUnsubscribe, UnsubscribeArgs{Port: port}, nil)
}

// Pause tells the agent the session's local process is paused in a
// debugger (or runs again). An agent older than pause answers unknown_op.
func (c *Client) Pause(ctx context.Context, paused bool) error {
	return c.call(ctx, OpPause, PauseArgs{Paused: paused}, nil)
}

// ServeIncoming accepts the streams the agent opens and hands each to f,
// then pipes it to the local connection f returns (in mirror mode the
// local answers are read and dropped). onAbort, if set, hears of streams
// the agent aborted for a reason. It returns when the transport ends.
func (c *Client) ServeIncoming(f IncomingFunc, onAbort func(IncomingHeader)) {
	var mu sync.Mutex
	locals := map[uint32]net.Conn{}
	for {
		st, err := c.mux.AcceptStream()
		if err != nil {
			return
		}
		go func() {
			st.SetReadDeadline(time.Now().Add(helloTimeout))
			var hdr IncomingHeader
			if err := readMessage(st, &hdr, MaxHeaderSize); err != nil || hdr.validate() != nil {
				st.Close()
				return
			}
			st.SetReadDeadline(time.Time{})
			if hdr.Kind == StreamAbort {
				st.Close()
				if hdr.Reason != "" && onAbort != nil {
					onAbort(hdr)
				}
				mu.Lock()
				local := locals[hdr.Stream]
				mu.Unlock()
				if local != nil {
					local.Close()
				}
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), helloTimeout)
			local, err := f(ctx, hdr)
			cancel()
			if err != nil {
				st.SetWriteDeadline(time.Now().Add(helloTimeout))
				writeMessage(st, &IncomingReply{Error: WireError(err)}, MaxHeaderSize)
				st.Close()
				return
			}
			if err := writeMessage(st, &IncomingReply{}, MaxHeaderSize); err != nil {
				st.Close()
				local.Close()
				return
			}
			id := st.StreamID()
			mu.Lock()
			locals[id] = local
			mu.Unlock()
			pipeIncoming(st, local, hdr.Mode == ModeMirror)
			mu.Lock()
			delete(locals, id)
			mu.Unlock()
		}()
	}
}

// pipeIncoming copies the agent's bytes to the local process and, unless
// mirroring, its answers back, propagating half-closes.
func pipeIncoming(st *yamux.Stream, local net.Conn, mirror bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if mirror {
			io.Copy(io.Discard, local)
			return
		}
		netpipe.Copy(st, local)
		st.Close()
	}()
	netpipe.Copy(local, st)
	netpipe.CloseWrite(local)
	if mirror {
		// Nobody waits for a mirrored answer: don't let a local server
		// that never closes hold the connection.
		select {
		case <-done:
		case <-time.After(mirrorLinger):
		}
	} else {
		<-done
	}
	local.Close()
	st.Close()
}

// mirrorLinger is how long a mirrored connection's local side may go on
// answering after the client finished.
const mirrorLinger = 5 * time.Second

func (r *IncomingReply) validate() error { return nil }
