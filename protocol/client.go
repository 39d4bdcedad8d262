package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/yamux"
)

var (
	// ErrConnectionLost wraps every error caused by the transport breaking;
	// the helper may then Dial again with Hello.Resume set.
	ErrConnectionLost = errors.New("protocol: connection to the agent lost")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("protocol: client closed")
)

// Client is the helper's side of one transport connection to an agent.
// Its methods may be called concurrently.
type Client struct {
	mux      *yamux.Session
	ctrl     *yamux.Stream
	hello    HelloReply
	helloReq Hello // what a bulk connection presents

	wmu sync.Mutex // serializes control-stream frames

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan *Response
	err     error
	done    chan struct{}
	closing atomic.Bool // Close said goodbye: the agent hanging up is expected

	// Bulk connections (bulk.go), under mu.
	bulkDial   Dialer
	bulkAfter  int64
	bulkActive int
	bulkJoined atomic.Int64
}

// Dial starts a session (or resumes one, with hello.Resume) over conn,
// which the Client owns from then on. hello.Protocol defaults to Version.
// ctx bounds the handshake only.
func Dial(ctx context.Context, conn net.Conn, hello Hello) (*Client, error) {
	if hello.Protocol == 0 {
		hello.Protocol = Version
	}
	if err := hello.validate(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("protocol: invalid hello: %w", err)
	}
	mux, _, err := newMux(conn, nil, true, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	reply, ctrl, err := handshake(ctx, mux, &hello)
	if err != nil {
		mux.Close()
		return nil, err
	}
	c := &Client{
		mux:      mux,
		ctrl:     ctrl,
		hello:    reply,
		helloReq: hello,
		pending:  map[uint64]chan *Response{},
		done:     make(chan struct{}),
	}
	go c.readResponses()
	go c.keepalive()
	return c, nil
}

func handshake(ctx context.Context, mux *yamux.Session, hello *Hello) (HelloReply, *yamux.Stream, error) {
	var reply HelloReply
	ctrl, err := mux.OpenStream()
	if err != nil {
		return reply, nil, fmt.Errorf("%w: opening the hello stream: %v", ErrConnectionLost, err)
	}
	deadline := time.Now().Add(helloTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ctrl.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { ctrl.SetDeadline(time.Unix(1, 0)) })
	err = writeMessage(ctrl, hello, MaxHeaderSize)
	if err == nil {
		err = readMessage(ctrl, &reply, MaxHeaderSize)
	}
	if !stop() {
		return reply, nil, ctx.Err()
	}
	if err != nil {
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrMessageTooLarge) {
			return reply, nil, fmt.Errorf("protocol: bad hello reply (is this a doppel agent?): %w", err)
		}
		return reply, nil, fmt.Errorf("%w: during hello: %v", ErrConnectionLost, err)
	}
	ctrl.SetDeadline(time.Time{})
	if reply.Error != nil {
		return reply, nil, remoteError("hello", reply.Error)
	}
	if reply.Protocol != hello.Protocol {
		return reply, nil, &RemoteError{Op: "hello", Code: CodeVersion, Message: fmt.Sprintf(
			"this helper speaks protocol version %d, the agent (%s) speaks version %d: use a doppel release that matches the agent",
			hello.Protocol, reply.AgentVersion, reply.Protocol)}
	}
	return reply, ctrl, nil
}

// AgentVersion is the agent's version from its hello reply.
func (c *Client) AgentVersion() string { return c.hello.AgentVersion }

// Resumed reports whether the agent reattached kept session state.
func (c *Client) Resumed() bool { return c.hello.Resumed }

// Done is closed when the transport ended, by Close or by breaking.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why Done was closed: ErrClosed after Close, an error wrapping
// ErrConnectionLost otherwise. It is nil while the client is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the session: the agent forgets it at once instead of keeping
// it for a resume. Open connections and files break.
func (c *Client) Close() error {
	select {
	case <-c.done:
	default:
		c.closing.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c.call(ctx, OpClose, nil, nil)
		cancel()
	}
	c.fail(ErrClosed)
	return nil
}

// fail ends the client with err, once.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	close(c.done)
	c.mu.Unlock()
	c.mux.Close()
}

// lost fails the client with a transport error and returns the error that
// ends it (the first one, if it ended already).
func (c *Client) lost(err error) error {
	if c.closing.Load() {
		err = ErrClosed
	} else if !errors.Is(err, ErrConnectionLost) && !errors.Is(err, ErrClosed) {
		err = fmt.Errorf("%w: %v", ErrConnectionLost, err)
	}
	c.fail(err)
	return c.Err()
}

func (c *Client) readResponses() {
	for {
		var resp Response
		if err := readMessage(c.ctrl, &resp, MaxMessageSize); err != nil {
			c.lost(err)
			return
		}
		c.mu.Lock()
		ch := c.pending[resp.ID]
		delete(c.pending, resp.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- &resp
		}
	}
}

// keepalive pings the agent well within its keepalive timeout, so the
// session lives as long as the helper does, whatever the local process is
// doing (a debuggee may sit at a breakpoint for an hour).
func (c *Client) keepalive() {
	timeout := time.Duration(c.hello.KeepaliveMS) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultKeepaliveTimeout
	}
	interval := max(timeout/3, 100*time.Millisecond)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			_, err := c.Ping(ctx)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				c.lost(fmt.Errorf("no answer to a ping within %s", timeout))
				return
			}
		}
	}
}

// call sends a request and decodes its result into result (if not nil).
func (c *Client) call(ctx context.Context, op string, args, result any) error {
	req := Request{Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return err
		}
		req.Args = b
	}
	if d, ok := ctx.Deadline(); ok {
		ms := time.Until(d).Milliseconds()
		if ms <= 0 {
			return context.DeadlineExceeded
		}
		req.TimeoutMS = ms
	}
	ch := make(chan *Response, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.nextID++
	req.ID = c.nextID
	c.pending[req.ID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, req.ID)
		c.mu.Unlock()
	}()

	c.wmu.Lock()
	err := writeMessage(c.ctrl, req, MaxMessageSize)
	c.wmu.Unlock()
	if err != nil {
		if errors.Is(err, ErrMessageTooLarge) {
			return fmt.Errorf("%s: %w", op, err)
		}
		return c.lost(err)
	}
	select {
	case resp := <-ch:
		if resp.Error != nil {
			return remoteError(op, resp.Error)
		}
		if result == nil {
			return nil
		}
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return fmt.Errorf("%w: %s result: %v", ErrMalformed, op, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.Err()
	}
}

// Env returns the target process's environment ("KEY=value", in order).
func (c *Client) Env(ctx context.Context) ([]string, error) {
	var r EnvResult
	err := c.call(ctx, OpEnv, nil, &r)
	return r.Env, err
}

// Hostname returns the pod's hostname.
func (c *Client) Hostname(ctx context.Context) (string, error) {
	var r HostnameResult
	err := c.call(ctx, OpHostname, nil, &r)
	return r.Hostname, err
}

// DNS sends a raw DNS message to the pod's resolver and returns its raw
// answer, NXDOMAIN and SERVFAIL included.
func (c *Client) DNS(ctx context.Context, query []byte) ([]byte, error) {
	if len(query) < dnsHeaderSize || len(query) > MaxDatagramSize {
		return nil, &RemoteError{Op: OpDNS, Errno: syscall.EINVAL, Message: "a DNS message is 12 to 65535 bytes"}
	}
	var r DNSResult
	err := c.call(ctx, OpDNS, DNSArgs{Query: query}, &r)
	return r.Answer, err
}

// Stat returns the file's stat in the target's root, following symlinks
// (inside that root).
func (c *Client) Stat(ctx context.Context, path string) (FileInfo, error) {
	if err := checkClientPath(OpStat, path); err != nil {
		return FileInfo{}, err
	}
	var r StatResult
	err := c.call(ctx, OpStat, PathArgs{Path: path}, &r)
	return r.Info, err
}

// Lstat is Stat without following a final symlink.
func (c *Client) Lstat(ctx context.Context, path string) (FileInfo, error) {
	if err := checkClientPath(OpLstat, path); err != nil {
		return FileInfo{}, err
	}
	var r StatResult
	err := c.call(ctx, OpLstat, PathArgs{Path: path}, &r)
	return r.Info, err
}

// Readlink returns a symlink's content.
func (c *Client) Readlink(ctx context.Context, path string) (string, error) {
	if err := checkClientPath(OpReadlink, path); err != nil {
		return "", err
	}
	var r ReadlinkResult
	err := c.call(ctx, OpReadlink, PathArgs{Path: path}, &r)
	return r.Target, err
}

// ReadDir returns the directory's entries sorted by name. Large
// directories come in several pages; a directory changing meanwhile may
// show an entry twice or not at all, as with getdents.
func (c *Client) ReadDir(ctx context.Context, path string) ([]DirEntry, error) {
	if err := checkClientPath(OpReadDir, path); err != nil {
		return nil, err
	}
	var all []DirEntry
	offset := 0
	for {
		var r ReadDirResult
		if err := c.call(ctx, OpReadDir, ReadDirArgs{Path: path, Offset: offset}, &r); err != nil {
			return nil, err
		}
		all = append(all, r.Entries...)
		if r.Next == 0 {
			return all, nil
		}
		if r.Next <= offset {
			return nil, fmt.Errorf("%w: readdir page offset went from %d to %d", ErrMalformed, offset, r.Next)
		}
		offset = r.Next
	}
}

// Ping makes a round trip on the control stream and returns its time.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	err := c.call(ctx, OpPing, nil, nil)
	return time.Since(start), err
}

// abort asks the agent to tear a data stream down now, without waiting.
func (c *Client) abort(stream uint32) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), helloTimeout)
		defer cancel()
		c.call(ctx, OpAbort, AbortArgs{Stream: stream}, nil)
	}()
}

// openStream opens a data stream, sends hdr and reads the agent's reply
// into reply, all within ctx; a nil reply is left for the caller to read
// (an early dial).
func (c *Client) openStream(ctx context.Context, hdr *StreamHeader, reply message) (*yamux.Stream, error) {
	if d, ok := ctx.Deadline(); ok {
		ms := time.Until(d).Milliseconds()
		if ms <= 0 {
			return nil, context.DeadlineExceeded
		}
		hdr.TimeoutMS = ms
	}
	if err := c.Err(); err != nil {
		return nil, err
	}
	st, err := c.mux.OpenStream()
	if err != nil {
		return nil, c.lost(err)
	}
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Unix(1, 0)) })
	err = writeMessage(st, hdr, MaxHeaderSize)
	if err == nil && reply != nil {
		err = readMessage(st, reply, MaxHeaderSize)
	}
	if !stop() {
		st.Close()
		c.abort(st.StreamID())
		return nil, ctx.Err()
	}
	if err != nil {
		st.Close()
		select {
		case <-c.mux.CloseChan():
			return nil, c.lost(err)
		default:
		}
		c.abort(st.StreamID())
		return nil, fmt.Errorf("%s stream: %w", hdr.Kind, err)
	}
	return st, nil
}

// DialTCP connects to address (an IP literal and port) from the pod. The
// returned net.Conn also has CloseWrite, which half-closes like
// shutdown(SHUT_WR); its LocalAddr and RemoteAddr are the pod socket's.
func (c *Client) DialTCP(ctx context.Context, address string) (net.Conn, error) {
	conn, err := c.dialStream(ctx, "tcp", address)
	if err != nil {
		return nil, err // not a nil *Conn in a non-nil net.Conn
	}
	return conn, nil
}

// DialTCPEarly is DialTCP without waiting for the agent's answer: it
// returns once the dial stream is open, and bytes written meanwhile wait
// in the stream until the agent's dial succeeds (SPEC.md, "early dial").
// The answer comes with the first Read: a failed dial is its error, a
// *RemoteError with the pod's errno (DialFailed tells it apart). This
// saves a round trip to the agent on every new connection.
func (c *Client) DialTCPEarly(ctx context.Context, address string) (net.Conn, error) {
	hdr := &StreamHeader{Kind: StreamDial, Network: "tcp", Address: address, Early: true}
	st, err := c.openStream(ctx, hdr, nil)
	if err != nil {
		return nil, err
	}
	return &Conn{client: c, st: st, early: true, remote: parseAddr("tcp", address), local: stringAddr{"tcp", "(dialing)"},
		bulkAfter: c.bulkThreshold()}, nil
}

func (c *Client) dialStream(ctx context.Context, network, address string) (*Conn, error) {
	var reply DialReply
	st, err := c.openStream(ctx, &StreamHeader{Kind: StreamDial, Network: network, Address: address}, &reply)
	if err != nil {
		return nil, err
	}
	if reply.Error != nil {
		st.Close()
		return nil, remoteError("dial "+network+" "+address, reply.Error)
	}
	return &Conn{client: c, st: st, bulkAfter: c.bulkThreshold(),
		local: parseAddr(network, reply.Local), remote: parseAddr(network, reply.Remote)}, nil
}

// DialUDP creates a UDP socket in the pod connected to address. The
// returned net.Conn carries one datagram per Write and Read, like a
// connected UDP socket; datagrams that arrive while nobody reads are
// dropped beyond a small queue.
func (c *Client) DialUDP(ctx context.Context, address string) (net.Conn, error) {
	var reply DialReply
	st, err := c.openStream(ctx, &StreamHeader{Kind: StreamDial, Network: "udp", Address: address}, &reply)
	if err != nil {
		return nil, err
	}
	if reply.Error != nil {
		st.Close()
		return nil, remoteError("dial udp "+address, reply.Error)
	}
	return newDatagramConn(st, parseAddr("udp", reply.Local), parseAddr("udp", reply.Remote)), nil
}

// Open opens a file in the target's root for reading; its content follows
// to EOF. FileInfo is the file's stat at open time (procfs files report
// size 0 and still have content).
func (c *Client) Open(ctx context.Context, path string) (io.ReadCloser, FileInfo, error) {
	if err := checkClientPath("open", path); err != nil {
		return nil, FileInfo{}, err
	}
	var reply OpenReply
	st, err := c.openStream(ctx, &StreamHeader{Kind: StreamOpen, Path: path}, &reply)
	if err != nil {
		return nil, FileInfo{}, err
	}
	if reply.Error != nil {
		st.Close()
		return nil, FileInfo{}, remoteError("open "+path, reply.Error)
	}
	return &fileReader{client: c, st: st}, *reply.Info, nil
}

// checkClientPath refuses locally what JSON cannot carry unchanged: a
// path that is not valid UTF-8 would arrive with its bytes replaced.
func checkClientPath(op, path string) error {
	if !utf8.ValidString(path) {
		return &RemoteError{Op: op, Errno: syscall.EILSEQ, Message: "path is not valid UTF-8"}
	}
	return nil
}
