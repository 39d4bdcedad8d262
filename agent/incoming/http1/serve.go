package http1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/doppel-dev/doppel/internal/netpipe"
)

// expectGrace is how long a request body sent with Expect: 100-continue
// may still take to arrive after a final response that came without a
// 100: the client may have started sending it anyway, or never will.
const expectGrace = 100 * time.Millisecond

// aLongTimeAgo is a deadline that wakes a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// Serve reads the requests of one client connection and forwards each,
// head and body byte for byte, to route(req), or to original when route
// returns nil; the responses come back in order, byte for byte.
//
// Requests for the original server share one connection to it, dialed
// when first needed and dialed again when the server closed it. A routed
// request gets a connection of its own, closed after its response. A 101
// (or a 2xx to CONNECT) turns the client connection into a tunnel to the
// upstream of the request that asked for it, until both sides close.
//
// br reads client and may hold bytes already peeked. A nil route sends
// every request to original, and so does a routed upstream whose Dial
// says ErrUseOriginal. A request the agent
// refuses gets its status (see ReadRequest), one whose upstream cannot be
// dialed or answers with a broken response gets a 502 if nothing of the
// response was sent yet, and the connection closes; so does one whose
// body stalls for bodyTimeout (a 408 if nothing was sent). Serve closes client
// before it returns; it returns nil when the client ended the connection
// between requests or stayed idle past lim.IdleTimeout, and ctx ends it.
//
// While a response is awaited without a request body being read, a client
// that goes away is not noticed until the response is written.
func Serve(ctx context.Context, client net.Conn, br *bufio.Reader, route func(*Request) Upstream, original Upstream, lim Limits) error {
	s := &server{
		ctx:      ctx,
		client:   client,
		br:       br,
		route:    route,
		original: original,
		lim:      lim.withDefaults(),
		open:     map[*upstreamConn]bool{},
	}
	return s.serve()
}

type server struct {
	ctx      context.Context
	client   net.Conn
	br       *bufio.Reader
	route    func(*Request) Upstream
	original Upstream
	lim      Limits

	// orig is the persistent connection to the original server, if any.
	orig *upstreamConn
	// bodies counts the request-body copies still running.
	bodies sync.WaitGroup

	mu      sync.Mutex
	open    map[*upstreamConn]bool // closed by abort
	aborted bool
}

func (s *server) serve() error {
	stop := context.AfterFunc(s.ctx, s.abort)
	err := s.loop()
	stop()
	if s.ctx.Err() != nil {
		s.client.Close()
		err = s.ctx.Err()
	} else {
		closeGracefully(s.client)
	}
	if s.orig != nil {
		s.drop(s.orig)
	}
	s.bodies.Wait()
	return err
}

func (s *server) loop() error {
	for first := true; ; first = false {
		req, err := s.readRequest(first)
		if req == nil {
			return err
		}
		keep, err := s.exchange(req)
		if err != nil || !keep {
			return err
		}
	}
}

// abort ends everything at once when ctx is done.
func (s *server) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aborted = true
	s.client.Close()
	for u := range s.open {
		u.conn.Close()
	}
}

// readRequest waits for the next request (IdleTimeout) and reads its head
// (HeadTimeout from its first byte). A nil request ends the connection.
func (s *server) readRequest(first bool) (*Request, error) {
	if !first {
		s.client.SetReadDeadline(time.Now().Add(s.lim.IdleTimeout))
		if _, err := s.br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) || netpipe.IsTimeout(err) {
				return nil, nil
			}
			return nil, err
		}
	}
	s.client.SetReadDeadline(time.Now().Add(s.lim.HeadTimeout))
	req, err := ReadRequest(s.br, s.lim)
	s.client.SetReadDeadline(time.Time{})
	var e *Error
	switch {
	case err == nil:
		return req, nil
	case errors.Is(err, io.EOF):
		return nil, nil
	case netpipe.IsTimeout(err):
		refuse(s.client, statusRequestTimeout)
		return nil, fmt.Errorf("request head not received within %v: %w", s.lim.HeadTimeout, err)
	case errors.As(err, &e):
		refuse(s.client, e.Status)
	}
	return nil, err
}

// exchange forwards one request and its response; keep reports whether
// the client connection carries another request.
func (s *server) exchange(req *Request) (keep bool, err error) {
	var up Upstream
	if s.route != nil {
		up = s.route(req)
	}
	routed := up != nil
	if !routed {
		up = s.original
	}
	for attempt := 0; ; attempt++ {
		u, err := s.connect(up, routed)
		if routed && errors.Is(err, ErrUseOriginal) {
			// Nothing was sent to it: the original server answers.
			up, routed = s.original, false
			u, err = s.connect(up, routed)
		}
		if err != nil {
			refuse(s.client, statusBadGateway)
			return false, fmt.Errorf("dial upstream: %w", err)
		}
		keep, retry, err := s.roundTrip(req, u, attempt == 0)
		if routed || !keep {
			s.drop(u)
		}
		if retry {
			continue
		}
		if keep && !routed {
			u.idle()
		}
		return keep, err
	}
}

// connect returns a fresh connection for a routed request, and the kept
// one to the original server if it is still usable.
func (s *server) connect(up Upstream, routed bool) (*upstreamConn, error) {
	if !routed && s.orig != nil {
		if s.orig.wake() {
			s.orig.reused = true
			return s.orig, nil
		}
		s.drop(s.orig)
	}
	u, err := dialUpstream(s.ctx, up, s.lim.DialTimeout)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.open[u] = true
	aborted := s.aborted
	s.mu.Unlock()
	if aborted {
		u.conn.Close()
	}
	if !routed {
		s.orig = u
	}
	return u, nil
}

func (s *server) drop(u *upstreamConn) {
	if s.orig == u {
		s.orig = nil
	}
	s.mu.Lock()
	delete(s.open, u)
	s.mu.Unlock()
	u.close()
}

// roundTrip writes the request to u and the response to the client.
// retry: the kept connection to the original server turned out closed
// before anything was answered, and the request can be sent again on a
// new one (only asked for on a first attempt).
func (s *server) roundTrip(req *Request, u *upstreamConn, first bool) (keep, retry bool, err error) {
	canRetry := func(err error) bool { return first && u.reused && retryable(req, err) }
	if _, err := u.conn.Write(req.Raw); err != nil {
		if canRetry(err) {
			return false, true, nil
		}
		refuse(s.client, statusBadGateway)
		return false, false, fmt.Errorf("write request head: %w", err)
	}
	body := s.sendBody(req, u)

	var resp *Response
	wrote, sent100 := false, false
	for {
		resp, err = ReadResponse(u.br, req, s.lim)
		if err != nil || !resp.Interim() {
			break
		}
		if _, err := s.client.Write(resp.Raw); err != nil {
			body.stop(s.client)
			return false, false, fmt.Errorf("write response: %w", err)
		}
		wrote = true
		if resp.Status == 100 && !sent100 {
			body.started()
		}
		sent100 = sent100 || resp.Status == 100
	}
	if err != nil {
		body.stop(s.client)
		var e *Error
		switch {
		case body.clientFailed && errors.As(body.err, &e):
			// The client's chunked body was refused: that is the failure.
			if !wrote {
				refuse(s.client, e.Status)
			}
			return false, false, fmt.Errorf("request body: %w", body.err)
		case body.clientFailed && netpipe.IsTimeout(body.err):
			// The client stalled mid-body for bodyTimeout.
			if !wrote {
				refuse(s.client, statusRequestTimeout)
			}
			return false, false, fmt.Errorf("request body: %w", body.err)
		case body.clientFailed:
			return false, false, fmt.Errorf("request body: %w", body.err)
		case !wrote && canRetry(err):
			return false, true, nil
		case !wrote:
			refuse(s.client, statusBadGateway)
		}
		return false, false, fmt.Errorf("response: %w", err)
	}

	// The final response's head, with its body when the body is already
	// buffered: one write (one syscall, one segment) for the usual small
	// response.
	whole := !resp.Tunnel && resp.Framing == ContentLength && resp.ContentLength <= int64(u.br.Buffered())
	out := net.Buffers{resp.Raw}
	if whole {
		b, _ := u.br.Peek(int(resp.ContentLength))
		out = append(out, b)
	}
	if _, err := out.WriteTo(s.client); err != nil {
		body.stop(s.client)
		return false, false, fmt.Errorf("write response: %w", err)
	}
	if whole {
		u.br.Discard(int(resp.ContentLength))
	}
	if resp.Tunnel {
		if body.wait(); body.err != nil {
			return false, false, fmt.Errorf("request body: %w", body.err)
		}
		return false, false, tunnel(s.client, s.br, u.conn, u.br)
	}
	if !whole {
		if _, err := CopyBody(s.client, u.br, resp.Framing, resp.ContentLength, s.lim); err != nil {
			body.stop(s.client)
			return false, false, fmt.Errorf("response body: %w", err)
		}
	}
	closing := resp.Close || req.Close
	inStep := body.finish(s.client, s.lim.IdleTimeout, closing, req.Expect100 && !sent100)
	switch {
	case body.clientFailed:
		return false, false, fmt.Errorf("request body: %w", body.err)
	case !inStep || closing:
		// The connection ends, or part of the request body is still on
		// its way and the next request's start can't be found.
		return false, false, nil
	}
	return true, false, nil
}

// retryable: a bodiless request with a safe method that got nothing but
// a closed or reset connection back.
func retryable(req *Request, err error) bool {
	switch req.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
	default:
		return false
	}
	return req.Framing == NoBody && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
}
