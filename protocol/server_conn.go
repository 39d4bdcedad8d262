package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/yamux"

	"github.com/doppel-dev/doppel/internal/netpipe"
)

// Per-request and per-stream limits of the agent.
const (
	// readDirPage and readDirPageBytes bound a readdir page so that it
	// stays below MaxMessageSize, also with 255-byte names that JSON
	// escapes (a name costs at most 6 bytes a byte, plus its fields).
	readDirPage        = 1024
	readDirPageBytes   = MaxMessageSize / 2
	readDirKeep        = 10 * time.Second // how long a listing's later pages reuse it
	defaultDialTimeout = 30 * time.Second
	maxDialTimeout     = 5 * time.Minute
)

// serverConn is one helper transport attached to a session.
type serverConn struct {
	srv  *Server
	sess *session
	mux  *yamux.Session
	wire *wire // what mux writes through
	ctrl *yamux.Stream
	log  *slog.Logger

	wmu      sync.Mutex // serializes control-stream frames
	lastSeen atomic.Int64

	mu      sync.Mutex
	streams map[uint32]*dataStream // data streams by yamux id
	early   earlyAborts
	relays  map[uint32]*tcpRelay // TCP dial streams by yamux id: bulk joins find them here
	wg      sync.WaitGroup

	// listing is the last directory read in several pages: its later pages
	// come from it, rather than each reading and sorting it all again.
	listingMu sync.Mutex
	listing   struct {
		path    string
		entries []DirEntry
		at      time.Time
	}
}

// serve runs the control loop and the data-stream accept loop until the
// transport ends, then tears down every data stream.
func (c *serverConn) serve(ctx context.Context) error {
	// Work for this transport (requests, dials) stops when it ends.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-c.mux.CloseChan()
		cancel()
	}()
	stop := context.AfterFunc(ctx, func() { c.mux.Close() })
	defer stop()
	c.touch()
	go c.watchKeepalive()
	go c.acceptStreams(ctx)
	err := c.serveControl(ctx)
	c.mux.Close()
	c.mu.Lock()
	broken := make([]*dataStream, 0, len(c.streams))
	for _, ds := range c.streams {
		broken = append(broken, ds)
	}
	c.mu.Unlock()
	for _, ds := range broken {
		ds.breakOff() // the transport ended: no stream goes on, none ends in order
	}
	if !waitAtMost(&c.wg, stuckGrace) {
		// A read that does not return (a hung NFS or FUSE mount, a file
		// that blocks): leave it behind rather than keep the session
		// attached, and the agent from ever stopping, for its sake.
		c.log.Warn("streams still busy after the transport ended: detaching without them", "waited", stuckGrace)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, errSessionClosed) {
		return nil
	}
	return err
}

var errSessionClosed = errors.New("session closed by the helper")

// stuckGrace is how long a transport's end waits for its streams and
// requests to finish (a variable for tests).
var stuckGrace = 10 * time.Second

// waitAtMost waits for wg, up to d; false if it had to give up.
func waitAtMost(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func (c *serverConn) touch() { c.lastSeen.Store(time.Now().UnixNano()) }

// watchKeepalive drops the transport when the helper stays silent longer
// than the keepalive timeout; the session then waits for a resume.
func (c *serverConn) watchKeepalive() {
	timeout := c.srv.keepaliveTimeout()
	tick := time.NewTicker(timeout / 4)
	defer tick.Stop()
	for {
		select {
		case <-c.mux.CloseChan():
			return
		case now := <-tick.C:
			if idle := now.Sub(time.Unix(0, c.lastSeen.Load())); idle > timeout {
				c.log.Warn("no traffic from the helper: dropping the transport", "idle", idle.Round(time.Millisecond))
				c.mux.Close()
				return
			}
		}
	}
}

func (c *serverConn) serveControl(ctx context.Context) error {
	// sem: the requests worked on; queue: those read, worked on or
	// waiting. The loop goes on reading past a full sem (a ping or an
	// abort behind 64 slow DNS queries would otherwise wait, and the
	// helper take a healthy transport for dead); past a full queue it
	// stops, which pushes back through yamux.
	sem := make(chan struct{}, c.srv.maxRequests())
	queue := make(chan struct{}, 4*c.srv.maxRequests())
	defer func() {
		// Wait for requests in flight (their context ends with the
		// transport, closed by the deferred call below, which runs first),
		// but not for one stuck in a call that ignores it (a Stat on a hung
		// mount).
		give := time.After(stuckGrace)
		for range cap(queue) {
			select {
			case queue <- struct{}{}:
			case <-give:
				c.log.Warn("requests still busy after the transport ended: detaching without them", "waited", stuckGrace)
				return
			}
		}
	}()
	defer c.mux.Close()
	for {
		body, err := readFrame(c.ctrl, MaxMessageSize)
		if err != nil {
			if errors.Is(err, ErrMessageTooLarge) || errors.Is(err, ErrMalformed) {
				c.log.Warn("protocol error on the control stream: dropping the transport", "err", err)
			}
			return err
		}
		c.touch()
		var req Request
		if err := json.Unmarshal(body, &req); err != nil {
			c.log.Warn("protocol error on the control stream: dropping the transport", "err", err)
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if err := req.validate(); err != nil {
			c.respond(req.ID, nil, &RemoteError{Code: CodeBadRequest, Errno: syscall.EINVAL, Message: err.Error()})
			continue
		}
		arrived := time.Now()
		switch req.Op {
		case OpPing:
			c.respond(req.ID, Empty{}, nil)
		case OpAbort:
			c.handle(ctx, &req, arrived) // no I/O: at once, not behind slow requests
		case OpClose:
			c.srv.mu.Lock()
			c.sess.ended = true
			c.srv.mu.Unlock()
			c.respond(req.ID, Empty{}, nil)
			return errSessionClosed
		default:
			select {
			case queue <- struct{}{}:
			case <-c.mux.CloseChan():
				return yamux.ErrSessionShutdown
			}
			go func() {
				defer func() { <-queue }()
				var expired <-chan time.Time
				if req.TimeoutMS > 0 {
					t := time.NewTimer(time.Until(req.deadline(arrived)))
					defer t.Stop()
					expired = t.C
				}
				select {
				case sem <- struct{}{}:
				case <-expired:
					// The helper stopped waiting for it while it queued.
					c.respond(req.ID, nil, &RemoteError{Errno: syscall.ETIMEDOUT, Message: fmt.Sprintf("%s: timed out waiting behind %d requests in flight", req.Op, cap(sem))})
					return
				case <-c.mux.CloseChan():
					return
				}
				defer func() { <-sem }()
				c.handle(ctx, &req, arrived)
			}()
		}
	}
}

// deadline is when the helper stops waiting for the request that arrived
// then: its timeout counts from its arrival, not from when work began.
func (req *Request) deadline(arrived time.Time) time.Time {
	return arrived.Add(time.Duration(req.TimeoutMS) * time.Millisecond)
}

// handle runs one request (arrived then) and writes its response.
func (c *serverConn) handle(ctx context.Context, req *Request, arrived time.Time) {
	if req.TimeoutMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, req.deadline(arrived))
		defer cancel()
	}
	defer func() {
		// A handler bug answers this request with EIO and is logged; the
		// agent and the other sessions go on.
		if v := recover(); v != nil {
			c.log.Error("internal error in a request handler", "op", req.Op, "panic", v, "stack", string(debug.Stack()))
			c.respond(req.ID, nil, &RemoteError{Code: CodeInternal, Errno: syscall.EIO, Message: fmt.Sprintf("internal error in the agent (%s): %v", req.Op, v)})
		}
	}()
	result, err := c.dispatch(ctx, req)
	if err != nil {
		c.log.Debug("request failed", "op", req.Op, "err", err)
	}
	c.respond(req.ID, result, err)
}

func (c *serverConn) dispatch(ctx context.Context, req *Request) (any, error) {
	h := c.srv.Handler
	switch req.Op {
	case OpEnv:
		env, err := h.Env(ctx)
		return EnvResult{Env: env}, err
	case OpHostname:
		name, err := h.Hostname(ctx)
		return HostnameResult{Hostname: name}, err
	case OpDNS:
		var args DNSArgs
		if err := parseArgs(req, &args); err != nil {
			return nil, err
		}
		if len(args.Query) < dnsHeaderSize || len(args.Query) > MaxDatagramSize {
			return nil, badRequest("a DNS query is 12 to 65535 bytes, got %d", len(args.Query))
		}
		answer, err := h.DNS(ctx, args.Query)
		return DNSResult{Answer: answer}, err
	case OpStat, OpLstat, OpReadlink:
		var args PathArgs
		if err := parseArgs(req, &args); err != nil {
			return nil, err
		}
		if err := checkPath(args.Path); err != nil {
			return nil, err
		}
		switch req.Op {
		case OpStat:
			fi, err := h.Stat(ctx, args.Path)
			return StatResult{Info: fi}, err
		case OpLstat:
			fi, err := h.Lstat(ctx, args.Path)
			return StatResult{Info: fi}, err
		default:
			target, err := h.Readlink(ctx, args.Path)
			return ReadlinkResult{Target: target}, err
		}
	case OpReadDir:
		var args ReadDirArgs
		if err := parseArgs(req, &args); err != nil {
			return nil, err
		}
		if err := checkPath(args.Path); err != nil {
			return nil, err
		}
		if args.Offset < 0 {
			return nil, badRequest("negative offset")
		}
		return c.readDir(ctx, h, args)
	case OpSubscribe, OpUnsubscribe, OpPause:
		return c.dispatchIncoming(ctx, req)
	case OpFreeze, OpUnfreeze:
		return c.dispatchFreeze(ctx, req)
	case OpAbort:
		var args AbortArgs
		if err := parseArgs(req, &args); err != nil {
			return nil, err
		}
		c.abortStream(args.Stream)
		return Empty{}, nil
	}
	return nil, &RemoteError{Code: CodeUnknownOp, Errno: syscall.ENOSYS,
		Message: fmt.Sprintf("this agent (protocol %d) has no operation %q", Version, req.Op)}
}

// readDir serves a page of a listing: the first page reads the directory,
// later ones (offset > 0) reuse that reading for a while.
func (c *serverConn) readDir(ctx context.Context, h Handler, args ReadDirArgs) (ReadDirResult, error) {
	c.listingMu.Lock()
	l := c.listing
	c.listingMu.Unlock()
	entries := l.entries
	if args.Offset == 0 || l.path != args.Path || time.Since(l.at) > readDirKeep {
		var err error
		if entries, err = h.ReadDir(ctx, args.Path); err != nil {
			return ReadDirResult{}, err
		}
		sortEntries(entries)
	}
	res := readDirPageOf(entries, args.Offset)
	c.listingMu.Lock()
	if res.Next != 0 {
		c.listing.path, c.listing.entries, c.listing.at = args.Path, entries, time.Now()
	} else if c.listing.path == args.Path {
		c.listing.path, c.listing.entries = "", nil // read to the end
	}
	c.listingMu.Unlock()
	return res, nil
}

func sortEntries(entries []DirEntry) {
	if !sort.SliceIsSorted(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name }) {
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	}
}

// readDirPageOf cuts the page at offset out of entries sorted by name.
func readDirPageOf(entries []DirEntry, offset int) ReadDirResult {
	if offset > len(entries) {
		offset = len(entries)
	}
	end, size := offset, 0
	for end < len(entries) && end-offset < readDirPage {
		size += 6*len(entries[end].Name) + 128
		if size > readDirPageBytes && end > offset {
			break
		}
		end++
	}
	res := ReadDirResult{Entries: entries[offset:end]}
	if res.Entries == nil {
		res.Entries = []DirEntry{}
	}
	if end < len(entries) {
		res.Next = end
	}
	return res
}

const dnsHeaderSize = 12

func parseArgs(req *Request, v any) error {
	if len(req.Args) == 0 {
		return badRequest("%s needs arguments", req.Op)
	}
	if err := json.Unmarshal(req.Args, v); err != nil {
		return badRequest("%s arguments: %v", req.Op, err)
	}
	return nil
}

// checkPath accepts what the handler can resolve in the target's root:
// absolute, clean enough to carry no NUL, valid UTF-8 (JSON strings are).
func checkPath(p string) error {
	switch {
	case !path.IsAbs(p):
		return badRequest("path %q is not absolute", p)
	case !utf8.ValidString(p):
		return &RemoteError{Errno: syscall.EILSEQ, Message: "path is not valid UTF-8"}
	}
	for i := 0; i < len(p); i++ {
		if p[i] == 0 {
			return badRequest("path contains NUL")
		}
	}
	return nil
}

func badRequest(format string, args ...any) error {
	return &RemoteError{Code: CodeBadRequest, Errno: syscall.EINVAL, Message: fmt.Sprintf(format, args...)}
}

// respond writes the response to request id. A result too large for one
// frame turns into an E2BIG error rather than a broken session.
func (c *serverConn) respond(id uint64, result any, err error) {
	resp := Response{ID: id}
	if err != nil {
		resp.Error = WireError(err)
	} else {
		b, merr := json.Marshal(result)
		if merr != nil {
			resp.Error = WireError(merr)
		} else {
			resp.Result = b
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	werr := writeMessage(c.ctrl, resp, MaxMessageSize)
	if errors.Is(werr, ErrMessageTooLarge) {
		resp = Response{ID: id, Error: &Error{Errno: "E2BIG", Message: werr.Error()}}
		werr = writeMessage(c.ctrl, resp, MaxMessageSize)
	}
	if werr != nil {
		c.log.Debug("writing a response failed", "err", werr)
		c.mux.Close()
	}
}

// acceptStreams serves each data stream the helper opens.
func (c *serverConn) acceptStreams(ctx context.Context) {
	for {
		st, err := c.mux.AcceptStream()
		if err != nil {
			return
		}
		c.touch()
		ds := &dataStream{conn: c, st: st, done: make(chan struct{})}
		if !c.register(ds) {
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				ds.refuse(&Error{Errno: "EMFILE", Message: fmt.Sprintf("more than %d streams in this session", c.srv.maxStreams())})
			}()
			continue
		}
		go func() {
			defer c.wg.Done()
			defer c.unregister(ds)
			defer func() {
				// A handler bug breaks this stream and is logged; the
				// agent and the other sessions go on (as for requests).
				if v := recover(); v != nil {
					c.log.Error("internal error in a data stream", "panic", v, "stack", string(debug.Stack()))
					ds.breakOff()
				}
			}()
			ds.serve(ctx)
		}()
	}
}

// register adds ds to the session's streams (and the wait group) unless
// the session holds too many.
func (c *serverConn) register(ds *dataStream) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := ds.st.StreamID()
	if c.early.accepted(id) {
		ds.aborted = true // its serve stops at the first onAbort
	}
	if len(c.streams) >= c.srv.maxStreams() {
		return false
	}
	c.streams[id] = ds
	c.wg.Add(1)
	return true
}

func (c *serverConn) unregister(ds *dataStream) {
	c.mu.Lock()
	delete(c.streams, ds.st.StreamID())
	c.mu.Unlock()
}

func (c *serverConn) abortStream(id uint32) {
	c.mu.Lock()
	ds := c.streams[id]
	if ds == nil {
		c.early.note(id, c.srv.maxStreams())
	}
	c.mu.Unlock()
	if ds != nil {
		ds.abort()
	}
}

// earlyAborts are the helper's aborts of streams this side has not
// accepted yet (a local client that connected and closed at once, its
// stream still in yamux's backlog): the stream is aborted when it is.
// yamux's stream ids only grow, so only ids above every accepted one can
// still come; the rest are forgotten.
type earlyAborts struct {
	ids  map[uint32]bool
	last uint32 // the highest id accepted
}

// note keeps id if a stream of that id may still be accepted (at most max).
func (e *earlyAborts) note(id uint32, max int) {
	if id <= e.last || len(e.ids) >= max {
		return
	}
	if e.ids == nil {
		e.ids = map[uint32]bool{}
	}
	e.ids[id] = true
}

// accepted reports whether the stream id, accepted now, was aborted already.
func (e *earlyAborts) accepted(id uint32) bool {
	e.last = max(e.last, id)
	aborted := e.ids[id]
	for a := range e.ids {
		if a <= e.last {
			delete(e.ids, a)
		}
	}
	return aborted
}

// dataStream is one helper-opened stream: a dial or an open.
type dataStream struct {
	conn *serverConn
	st   *yamux.Stream

	mu      sync.Mutex
	closers []io.Closer // what abort closes besides st
	aborted bool
	done    chan struct{}
}

// abort tears the stream down now, as the helper asked (its local
// connection closed): the pod connection or file closes and the helper's
// side sees the stream end.
func (ds *dataStream) abort() { ds.end(false) }

// breakOff ends the stream with its transport: the pod connection is reset,
// so that the pod's server does not take what it got for the whole.
func (ds *dataStream) breakOff() { ds.end(true) }

func (ds *dataStream) end(reset bool) {
	ds.mu.Lock()
	ds.aborted = true
	closers := ds.closers
	ds.closers = nil
	ds.mu.Unlock()
	for _, c := range closers {
		if reset {
			netpipe.Reset(c)
		} else {
			c.Close()
		}
	}
	ds.st.Close()
}

// cancelCloser makes an abort cancel a dial under way.
type cancelCloser context.CancelFunc

func (f cancelCloser) Close() error { f(); return nil }

// onAbort registers c to be closed by abort, or closes it at once if the
// stream was aborted already.
func (ds *dataStream) onAbort(c io.Closer) bool {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.aborted {
		c.Close()
		return false
	}
	ds.closers = append(ds.closers, c)
	return true
}

func (ds *dataStream) refuse(e *Error) {
	ds.st.SetWriteDeadline(time.Now().Add(helloTimeout))
	writeMessage(ds.st, DialReply{Error: e}, MaxHeaderSize)
	ds.st.Close()
}

func (ds *dataStream) serve(ctx context.Context) {
	defer ds.st.Close()
	ds.st.SetReadDeadline(time.Now().Add(helloTimeout))
	var hdr StreamHeader
	if err := readMessage(ds.st, &hdr, MaxHeaderSize); err != nil {
		ds.conn.log.Debug("bad stream header", "err", err)
		ds.refuse(&Error{Code: CodeBadRequest, Errno: "EINVAL", Message: err.Error()})
		return
	}
	ds.st.SetReadDeadline(time.Time{})
	switch hdr.Kind {
	case StreamDial:
		ds.serveDial(ctx, &hdr)
	case StreamOpen:
		ds.serveOpen(ctx, &hdr)
	default:
		ds.refuse(&Error{Code: CodeUnknownOp, Errno: "ENOSYS",
			Message: fmt.Sprintf("this agent (protocol %d) has no stream kind %q", Version, hdr.Kind)})
	}
}

func (ds *dataStream) serveDial(ctx context.Context, hdr *StreamHeader) {
	udp := false
	switch hdr.Network {
	case "tcp", "tcp4", "tcp6":
	case "udp", "udp4", "udp6":
		udp = true
	default:
		ds.refuse(&Error{Errno: "EPROTONOSUPPORT", Message: fmt.Sprintf("network %q is not tcp or udp", hdr.Network)})
		return
	}
	timeout := defaultDialTimeout
	if hdr.TimeoutMS > 0 {
		timeout = min(time.Duration(hdr.TimeoutMS)*time.Millisecond, maxDialTimeout)
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !ds.onAbort(cancelCloser(cancel)) {
		return // aborted before it began
	}
	conn, err := ds.conn.srv.Handler.Dial(dctx, hdr.Network, hdr.Address)
	cancel()
	if err != nil {
		ds.conn.log.Debug("dial failed", "network", hdr.Network, "address", hdr.Address, "err", err)
		ds.refuse(WireError(err))
		return
	}
	if !ds.onAbort(conn) {
		return
	}
	defer conn.Close()
	reply := DialReply{Local: conn.LocalAddr().String(), Remote: conn.RemoteAddr().String()}
	if udp {
		if err := writeMessage(ds.st, reply, MaxHeaderSize); err != nil {
			return
		}
		pipeDatagrams(ds.st, conn)
		return
	}
	// The helper's first bytes (an early dial's request) go to the pod
	// while the reply is on its way, or held back: the pod's bytes follow
	// the reply.
	rf := &replyFirst{Stream: ds.st, mux: ds.conn.mux}
	if hdr.Early {
		if rf.held, err = encodeFrame(reply, MaxHeaderSize); err != nil {
			return
		}
	} else {
		rf.sent = make(chan error, 1)
		go func() { rf.sent <- writeMessage(ds.st, reply, MaxHeaderSize) }()
	}
	relay := newTCPRelay(rf, conn, ds.onAbort)
	id := ds.st.StreamID()
	ds.conn.mu.Lock()
	ds.conn.relays[id] = relay
	ds.conn.mu.Unlock()
	relay.run()
	ds.conn.mu.Lock()
	delete(ds.conn.relays, id)
	ds.conn.mu.Unlock()
}

// replyFirst is a dial's stream whose writes wait until the dial's reply
// has been sent. An early dial's helper waits for nothing, so its reply is
// held and goes out with the pod's first bytes, in one write: a reply of
// its own would cross the port-forward's processes (containerd, kubelet,
// API server) while the helper's request is still on its way in through
// them, and they share the node's CPUs (docs/agent.md, "Early dials").
type replyFirst struct {
	*yamux.Stream
	mux  *yamux.Session
	sent chan error // a waiting dial's reply, sent on its own
	once sync.Once
	err  error

	mu   sync.Mutex
	held []byte // an early dial's reply frame, until the first write
}

// maxCoalesced bounds the pod bytes that share the held reply's write.
const maxCoalesced = 32 << 10

// Read is the helper's bytes for the pod; a transport that broke is an
// error (the pod's connection is reset), not the helper's FIN.
func (r *replyFirst) Read(b []byte) (int, error) {
	n, err := r.Stream.Read(b)
	return n, streamEOF(r.mux, err)
}

func (r *replyFirst) wait() error {
	if r.sent != nil {
		r.once.Do(func() { r.err = <-r.sent })
	}
	return r.err
}

func (r *replyFirst) takeHeld() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.held
	r.held = nil
	return b
}

func (r *replyFirst) Write(p []byte) (int, error) {
	if err := r.wait(); err != nil {
		return 0, err
	}
	b := r.takeHeld()
	if b == nil {
		return r.Stream.Write(p)
	}
	k := min(len(p), maxCoalesced)
	n, err := r.Stream.Write(append(b, p[:k]...))
	n = max(n-len(b), 0)
	if err != nil || k == len(p) {
		return n, err
	}
	m, err := r.Stream.Write(p[k:])
	return n + m, err
}

// Close (the stream's half-close) must not overtake the reply either.
func (r *replyFirst) Close() error {
	if r.wait() == nil {
		if b := r.takeHeld(); b != nil {
			r.Stream.Write(b)
		}
	}
	return r.Stream.Close()
}

func (ds *dataStream) serveOpen(ctx context.Context, hdr *StreamHeader) {
	if err := checkPath(hdr.Path); err != nil {
		ds.refuse(WireError(err))
		return
	}
	f, info, err := ds.conn.srv.Handler.Open(ctx, hdr.Path)
	if err != nil {
		ds.writeOpenError(err)
		return
	}
	if !ds.onAbort(f) {
		return
	}
	defer f.Close()
	if err := writeMessage(ds.st, OpenReply{Info: &info}, MaxHeaderSize); err != nil {
		return
	}
	if _, err := io.Copy(ds.st, f); err != nil {
		ds.conn.log.Debug("sending a file ended early", "path", hdr.Path, "err", err)
	}
}

func (ds *dataStream) writeOpenError(err error) {
	ds.st.SetWriteDeadline(time.Now().Add(helloTimeout))
	writeMessage(ds.st, OpenReply{Error: WireError(err)}, MaxHeaderSize)
}

// pipeDatagrams relays datagrams: on the stream each is a 2-byte
// big-endian length and the payload; on the pod side each is one UDP
// datagram of a connected socket.
func pipeDatagrams(st *yamux.Stream, conn net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer conn.Close()
		buf := make([]byte, MaxDatagramSize)
		for {
			n, err := readDatagram(st, buf)
			if err != nil {
				return
			}
			// A send error (ECONNREFUSED after an ICMP unreachable) loses
			// this datagram, as it would for a local UDP socket.
			conn.Write(buf[:n])
		}
	}()
	buf := make([]byte, 2+MaxDatagramSize)
	for {
		n, err := conn.Read(buf[2:])
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			break
		}
		if err := writeDatagram(st, buf, n); err != nil {
			break
		}
	}
	st.Close()
	<-done
}
