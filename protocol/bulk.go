package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/doppel-dev/doppel/internal/netpipe"
)

// Bulk connections (SPEC.md §7, "Bulk"): once a TCP dial stream has
// carried megabytes from the pod, the helper opens a transport connection
// of its own for the rest of the pod's bytes. Through the agent they then
// go from socket to socket in the kernel (splice), not through yamux's
// frames, window updates and the agent's memory; the helper-to-pod
// direction, and with it every half-close, stays on the stream.

// FeatureBulk in HelloReply.Features: the agent takes bulk connections.
const FeatureBulk = "bulk"

// joinPreface starts a connection that joins a dial stream rather than
// carrying a yamux session (whose first byte is its version, 0).
const joinPreface = "DOPPEL-BULK/1\n"

// JoinRequest is a join connection's first frame, after the preface.
type JoinRequest struct {
	SessionID string `json:"session"`
	Token     string `json:"token"`
	Stream    uint32 `json:"stream"`
}

func (r *JoinRequest) validate() error {
	if r.SessionID == "" || len(r.SessionID) > maxSessionIDLen || len(r.Token) > maxTokenLen || r.Stream == 0 {
		return fmt.Errorf("%w: a join names a session (at most %d characters), its token and a stream", ErrMalformed, maxSessionIDLen)
	}
	return nil
}

// JoinReply answers a JoinRequest. Without an error, the stream's FIN from
// the agent means "continued on the join connection", whose EOF is then
// the pod's.
type JoinReply struct {
	Error *Error `json:"error,omitempty"`
}

func (r *JoinReply) validate() error { return r.Error.validate() }

// Bulk settings of a Client.
const (
	// DefaultBulkAfter is how many bytes from the pod a connection carries
	// on its stream before it asks for a bulk connection.
	DefaultBulkAfter = 4 << 20
	// maxBulk bounds a client's bulk connections at once (each is a
	// port-forward of its own); beyond, downloads stay on their streams.
	maxBulk = 16
	// joinTimeout bounds dialing and answering a join.
	joinTimeout = 10 * time.Second
)

// Dialer opens a new transport connection to the agent (a port-forward).
type Dialer func(ctx context.Context) (net.Conn, error)

// SetBulk lets the client's TCP connections move their pod-to-helper bytes
// to connections of their own, dialed with dial, once they have carried
// after bytes on their stream (0: DefaultBulkAfter). Without it, or with
// an agent that does not announce FeatureBulk, they never move.
func (c *Client) SetBulk(dial Dialer, after int64) {
	if after <= 0 {
		after = DefaultBulkAfter
	}
	if !slices.Contains(c.hello.Features, FeatureBulk) {
		return
	}
	c.mu.Lock()
	c.bulkDial, c.bulkAfter = dial, after
	c.mu.Unlock()
}

// bulkThreshold is a new connection's byte count before it asks for a
// bulk connection; 0 when bulk is off.
func (c *Client) bulkThreshold() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bulkDial == nil {
		return 0
	}
	return c.bulkAfter
}

// BulkCount is how many connections moved to a bulk connection so far.
func (c *Client) BulkCount() int64 { return c.bulkJoined.Load() }

// startJoin begins moving conn's download to a bulk connection, unless
// bulk is off or at its limit.
func (c *Client) startJoin(conn *Conn) {
	c.mu.Lock()
	dial := c.bulkDial
	if dial == nil || c.bulkActive >= maxBulk {
		c.mu.Unlock()
		return
	}
	c.bulkActive++
	c.mu.Unlock()
	j := &join{done: make(chan struct{})}
	conn.mu.Lock()
	if conn.closed { // Close came first: it won't look for this join
		conn.mu.Unlock()
		c.bulkEnded()
		return
	}
	conn.join = j
	conn.mu.Unlock()
	go func() {
		b, err := c.dialJoin(dial, conn.st.StreamID())
		if err == nil {
			c.bulkJoined.Add(1)
		} else {
			c.bulkEnded()
		}
		j.conn, j.err = b, err
		close(j.done)
	}()
}

func (c *Client) bulkEnded() {
	c.mu.Lock()
	c.bulkActive--
	c.mu.Unlock()
}

// dialJoin opens a bulk connection for stream and has the agent take it.
func (c *Client) dialJoin(dial Dialer, stream uint32) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
	defer cancel()
	b, err := dial(ctx)
	if err != nil {
		return nil, &joinRefused{fmt.Errorf("dialing a bulk connection: %w", err)}
	}
	b.SetDeadline(time.Now().Add(joinTimeout))
	req := JoinRequest{SessionID: c.helloReq.SessionID, Token: c.helloReq.Token, Stream: stream}
	var reply JoinReply
	_, err = io.WriteString(b, joinPreface)
	if err == nil {
		err = writeMessage(b, &req, MaxHeaderSize)
	}
	if err != nil { // the agent can't have taken a join it did not read
		b.Close()
		return nil, &joinRefused{fmt.Errorf("sending a join: %w", err)}
	}
	if err := readMessage(b, &reply, MaxHeaderSize); err != nil {
		b.Close()
		return nil, fmt.Errorf("joining a bulk connection: %w", err) // the agent may have taken it
	}
	if reply.Error != nil {
		b.Close()
		return nil, &joinRefused{remoteError("join", reply.Error)}
	}
	b.SetDeadline(time.Time{})
	return b, nil
}

// joinRefused: the agent did not take the join (or never heard of it), so
// the stream's FIN is the pod's EOF.
type joinRefused struct{ err error }

func (e *joinRefused) Error() string { return e.err.Error() }
func (e *joinRefused) Unwrap() error { return e.err }

// join is a Conn's move to a bulk connection.
type join struct {
	done chan struct{}
	conn net.Conn // after done, without err
	err  error
}

// afterStreamEOF decides what the stream's FIN means for a Conn with a
// join under way: the bulk connection to read on, or nil for the pod's EOF.
func (j *join) afterStreamEOF() (net.Conn, error) {
	<-j.done
	var refused *joinRefused
	switch {
	case j.err == nil:
		return j.conn, nil
	case errors.As(j.err, &refused):
		return nil, nil
	}
	// The join broke after it was sent: the agent may have moved the
	// pod's bytes to a connection that is gone.
	return nil, fmt.Errorf("bulk connection lost: %w", j.err)
}

// Agent side.

// serveJoin serves a connection that started with joinPreface, within
// the deadline ServeConn set for its first bytes.
func (s *Server) serveJoin(conn net.Conn) error {
	var req JoinRequest
	if err := readMessage(conn, &req, MaxHeaderSize); err != nil {
		conn.Close()
		return fmt.Errorf("reading a join: %w", err)
	}
	relay, e := s.findRelay(&req)
	if e != nil {
		writeMessage(conn, &JoinReply{Error: e}, MaxHeaderSize)
		conn.Close()
		return fmt.Errorf("refused a join: %s", e.Message)
	}
	conn.SetDeadline(time.Time{})
	if !relay.join(conn) {
		writeMessage(conn, &JoinReply{Error: codeError(CodeBadRequest, "stream %d has ended", req.Stream)}, MaxHeaderSize)
		conn.Close()
	}
	return nil
}

// findRelay finds the relay of the join's stream, in a session bound to
// the join's token (the hash the session's hello authenticated with: a
// session outlives its hash's removal from the accepted set, and so do its
// joins).
func (s *Server) findRelay(req *JoinRequest) (*tcpRelay, *Error) {
	hash := HashToken(req.Token)
	s.mu.Lock()
	sess := s.sessions[req.SessionID]
	var live *serverConn
	if sess != nil && sameHash(sess.token, hash) {
		live = sess.live
	}
	s.mu.Unlock()
	if live == nil {
		return nil, codeError(CodeUnknownSession, "no attached session %q with this token", req.SessionID)
	}
	live.mu.Lock()
	relay := live.relays[req.Stream]
	live.mu.Unlock()
	if relay == nil {
		return nil, codeError(CodeBadRequest, "session %q has no TCP stream %d", req.SessionID, req.Stream)
	}
	return relay, nil
}

// tcpRelay joins a dial stream and its pod connection, passing
// half-closes on: the helper's FIN becomes shutdown(SHUT_WR) on the pod
// socket, and the pod's EOF the stream's FIN — or, once the pod-to-helper
// direction has moved to a bulk connection, that connection's EOF.
type tcpRelay struct {
	st  io.ReadWriteCloser // the stream, writes after the dial's reply
	pod net.Conn
	// onAbort has the stream's abort close a joined connection too (a
	// splice blocked writing to it would not notice the pod's side close).
	onAbort func(io.Closer) bool

	mu       sync.Mutex
	bulk     net.Conn
	acked    chan struct{} // closed once the join's reply is written
	downDone bool          // the pod's EOF went on the stream
	ended    bool
}

func newTCPRelay(st io.ReadWriteCloser, pod net.Conn, onAbort func(io.Closer) bool) *tcpRelay {
	return &tcpRelay{st: st, pod: pod, onAbort: onAbort, acked: make(chan struct{})}
}

// run copies both ways until both directions ended, passing half-closes
// on; a copy that fails ends everything at once.
func (r *tcpRelay) run() {
	var once sync.Once
	abort := func() { once.Do(func() { r.closeAll(true) }) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.down(abort)
	}()
	if _, err := netpipe.Copy(r.pod, r.st); err != nil {
		abort()
	} else {
		netpipe.CloseWrite(r.pod)
	}
	<-done
	r.closeAll(false)
}

// closeAll ends everything; abort resets a joined connection rather than
// closing it in order, so that the helper gets an error, not an EOF, for
// a download cut short (through a port-forward: the kubelet's error
// message on the port's error stream).
func (r *tcpRelay) closeAll(abort bool) {
	r.mu.Lock()
	r.ended = true
	b := r.bulk
	r.mu.Unlock()
	r.st.Close()
	if abort {
		netpipe.Reset(r.pod) // a FIN would pass for the end of the helper's bytes
	} else {
		r.pod.Close()
	}
	if b != nil {
		if tc, ok := b.(*net.TCPConn); ok && abort {
			tc.SetLinger(0)
		}
		b.Close()
	}
}

// down copies the pod's bytes to the stream, and to the bulk connection
// once one has joined: the stream's FIN then says so.
func (r *tcpRelay) down(abort func()) {
	bp := netpipe.Buffer()
	defer netpipe.PutBuffer(bp)
	buf := *bp
	for {
		n, err := r.pod.Read(buf)
		if n > 0 {
			if _, werr := r.st.Write(buf[:n]); werr != nil {
				abort()
				return
			}
		}
		if err == nil {
			continue
		}
		r.mu.Lock()
		b := r.bulk
		eof := err == io.EOF
		if eof {
			r.downDone = true
		}
		r.mu.Unlock()
		switch {
		case b != nil && (eof || netpipe.IsTimeout(err)):
			<-r.acked
			netpipe.CloseWrite(r.st) // continued on b
			if !eof {
				r.pod.SetReadDeadline(time.Time{})
				if _, err := netpipe.Copy(b, r.pod); err != nil { // splice
					abort()
					return
				}
			}
			netpipe.CloseWrite(b)
		case eof:
			netpipe.CloseWrite(r.st)
		default:
			abort()
		}
		return
	}
}

// join takes b for the pod-to-helper bytes; false if the relay has ended
// or the pod's EOF has gone on the stream already (the helper then reads
// that FIN as the pod's).
func (r *tcpRelay) join(b net.Conn) bool {
	r.mu.Lock()
	if r.ended || r.downDone || r.bulk != nil {
		r.mu.Unlock()
		return false
	}
	r.bulk = b
	r.mu.Unlock()
	if !r.onAbort(b) { // aborted meanwhile: b is closed
		close(r.acked)
		r.closeAll(true)
		return true
	}
	if err := writeMessage(b, &JoinReply{}, MaxHeaderSize); err != nil {
		close(r.acked)
		r.closeAll(true)
		return true
	}
	close(r.acked)
	r.pod.SetReadDeadline(time.Now()) // wakes down's Read
	return true
}
