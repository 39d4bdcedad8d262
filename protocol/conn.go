package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
)

// Conn is a TCP connection the agent dialed from the pod, carried by one
// data stream.
type Conn struct {
	client        *Client
	st            *yamux.Stream
	local, remote net.Addr

	// early: the dial's reply is still on the stream (DialTCPEarly); the
	// first Read takes it, and a failed dial is every Read's error.
	early     bool
	replyOnce sync.Once
	replyErr  error

	// Bulk (bulk.go): bytes read from the stream so far (by the one
	// reader), and the move of the pod's bytes to a connection of their own.
	bulkAfter int64 // 0: never
	received  int64

	mu      sync.Mutex
	readEOF bool // the pod side finished sending
	closed  bool
	join    *join    // asked for
	bulk    net.Conn // reading there, after the stream's FIN
	// readDeadline is the last one set, for a bulk connection joining later.
	readDeadline time.Time
}

var _ net.Conn = (*Conn)(nil)

func (c *Conn) Read(b []byte) (int, error) {
	c.mu.Lock()
	closed, bulk, j := c.closed, c.bulk, c.join
	c.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	if bulk != nil {
		n, err := bulk.Read(b)
		if err == io.EOF {
			c.setReadEOF()
		}
		return n, err
	}
	if c.early {
		if err := c.reply(); err != nil {
			return 0, err
		}
	}
	n, err := c.st.Read(b)
	err = streamEOF(c.client.mux, err)
	if n > 0 && c.bulkAfter > 0 && j == nil {
		if c.received += int64(n); c.received >= c.bulkAfter {
			c.bulkAfter = 0 // asked once
			c.client.startJoin(c)
		}
	}
	if err != io.EOF {
		return n, err
	}
	c.mu.Lock()
	j = c.join // perhaps asked for just now
	c.mu.Unlock()
	if j != nil {
		// The FIN may mean "continued on the bulk connection".
		bc, jerr := j.afterStreamEOF()
		if jerr != nil {
			return n, jerr
		}
		if bc != nil {
			c.mu.Lock()
			c.bulk = bc
			deadline := c.readDeadline
			c.mu.Unlock()
			if !deadline.IsZero() {
				bc.SetReadDeadline(deadline) // set on the stream, it goes on here
			}
			return n, nil
		}
	}
	c.setReadEOF()
	return n, err
}

func (c *Conn) setReadEOF() {
	c.mu.Lock()
	c.readEOF = true
	c.mu.Unlock()
}

// reply reads an early dial's reply, once.
func (c *Conn) reply() error {
	c.replyOnce.Do(func() {
		var r DialReply
		if err := readMessage(c.st, &r, MaxHeaderSize); err != nil {
			c.replyErr = fmt.Errorf("dial stream: %w", err)
			return
		}
		if r.Error != nil {
			c.replyErr = remoteError("dial tcp "+c.remote.String(), r.Error)
			c.mu.Lock()
			c.readEOF = true // the agent closed the stream: nothing to abort
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.local = parseAddr("tcp", r.Local)
		c.mu.Unlock()
	})
	return c.replyErr
}

// DialFailed reports whether err is an early dial's failure in the pod
// (as opposed to the connection failing later): the local side should see
// a refused or reset connection with its errno.
func DialFailed(err error) bool {
	var re *RemoteError
	return errors.As(err, &re) && strings.HasPrefix(re.Op, "dial ")
}

func (c *Conn) Write(b []byte) (int, error) {
	n, err := c.st.Write(b)
	if errors.Is(err, yamux.ErrStreamClosed) {
		// Written after CloseWrite or Close, as a socket would report it.
		err = syscall.EPIPE
	}
	return n, err
}

// CloseWrite half-closes: the pod's server reads EOF, and can still answer.
func (c *Conn) CloseWrite() error { return c.st.Close() }

// Close closes both directions. Unless the pod side had finished
// sending, the agent is told to drop its connection at once.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	needAbort := !c.readEOF
	j := c.join
	c.mu.Unlock()
	if j != nil {
		go func() {
			<-j.done
			if j.conn == nil {
				return
			}
			j.conn.Close()
			c.client.bulkEnded()
		}()
	}
	c.st.Close()
	if needAbort {
		c.client.abort(c.st.StreamID())
	}
	return nil
}

// LocalAddr is the pod socket's address; for an early dial, a placeholder
// until the first Read has taken the agent's reply.
func (c *Conn) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local
}

func (c *Conn) RemoteAddr() net.Addr               { return c.remote }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.st.SetWriteDeadline(t) }

func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.st.SetWriteDeadline(t)
}

// SetReadDeadline applies where the pod's bytes come from: the stream, or
// the bulk connection.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	bulk := c.bulk
	c.mu.Unlock()
	if bulk != nil {
		return bulk.SetReadDeadline(t)
	}
	return c.st.SetReadDeadline(t)
}

// fileReader reads an opened file's content from its stream.
type fileReader struct {
	client *Client
	st     *yamux.Stream

	mu     sync.Mutex
	eof    bool
	closed bool
}

func (f *fileReader) Read(b []byte) (int, error) {
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	n, err := f.st.Read(b)
	err = streamEOF(f.client.mux, err)
	if err == io.EOF {
		f.mu.Lock()
		f.eof = true
		f.mu.Unlock()
	}
	return n, err
}

// Close stops the transfer; before EOF the agent is told to stop sending.
func (f *fileReader) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	needAbort := !f.eof
	f.mu.Unlock()
	f.st.Close()
	if needAbort {
		f.client.abort(f.st.StreamID())
	}
	return nil
}

// datagramQueue is how many received datagrams wait for a Read before
// newer ones are dropped, as a full socket buffer would.
const datagramQueue = 128

// datagramConn is a connected UDP socket in the pod, carried by one data
// stream with 2-byte length framing.
type datagramConn struct {
	st            *yamux.Stream
	local, remote net.Addr
	in            chan []byte
	closed        chan struct{}
	closeOnce     sync.Once
	wmu           sync.Mutex
	readDeadline  deadline

	errMu   sync.Mutex
	readErr error
}

func newDatagramConn(st *yamux.Stream, local, remote net.Addr) *datagramConn {
	c := &datagramConn{st: st, local: local, remote: remote,
		in: make(chan []byte, datagramQueue), closed: make(chan struct{})}
	c.readDeadline.init()
	go c.receive()
	return c
}

func (c *datagramConn) receive() {
	defer close(c.in)
	buf := make([]byte, MaxDatagramSize)
	for {
		n, err := readDatagram(c.st, buf)
		if err != nil {
			c.errMu.Lock()
			c.readErr = err
			c.errMu.Unlock()
			return
		}
		select {
		case c.in <- append([]byte(nil), buf[:n]...):
		default:
		}
	}
}

// Read returns one datagram, truncated to len(b) like recv(2) does.
func (c *datagramConn) Read(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	select {
	case d, ok := <-c.in:
		if !ok {
			c.errMu.Lock()
			defer c.errMu.Unlock()
			return 0, c.readErr
		}
		return copy(b, d), nil
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.readDeadline.wait():
		return 0, yamux.ErrTimeout
	}
}

// Write sends b as one datagram.
func (c *datagramConn) Write(b []byte) (int, error) {
	if len(b) > MaxDatagramSize {
		return 0, syscall.EMSGSIZE
	}
	frame := make([]byte, 2+len(b))
	copy(frame[2:], b)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := writeDatagram(c.st, frame, len(b)); err != nil {
		if errors.Is(err, yamux.ErrStreamClosed) {
			return 0, net.ErrClosed
		}
		return 0, err
	}
	return len(b), nil
}

// Close ends the stream; the agent closes the pod socket on its EOF.
func (c *datagramConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.st.Close()
	})
	return nil
}

func (c *datagramConn) LocalAddr() net.Addr  { return c.local }
func (c *datagramConn) RemoteAddr() net.Addr { return c.remote }
func (c *datagramConn) SetDeadline(t time.Time) error {
	c.readDeadline.set(t)
	return c.st.SetWriteDeadline(t)
}
func (c *datagramConn) SetReadDeadline(t time.Time) error {
	c.readDeadline.set(t)
	return nil
}
func (c *datagramConn) SetWriteDeadline(t time.Time) error { return c.st.SetWriteDeadline(t) }

// readDatagram reads one length-prefixed datagram into buf.
func readDatagram(r io.Reader, buf []byte) (int, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n > len(buf) {
		return 0, io.ErrShortBuffer
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return n, nil
}

// writeDatagram writes frame, whose first two bytes are free for the
// length of the n payload bytes after them, in one Write.
func writeDatagram(w io.Writer, frame []byte, n int) error {
	binary.BigEndian.PutUint16(frame, uint16(n))
	_, err := w.Write(frame[:2+n])
	return err
}

// deadline is a settable read deadline that wakes a blocked reader when
// it passes or changes.
type deadline struct {
	mu      sync.Mutex
	timer   *time.Timer
	expired chan struct{}
}

func (d *deadline) init() { d.expired = make(chan struct{}) }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.expired // the timer fired: wait for its close
	}
	d.timer = nil
	closed := false
	select {
	case <-d.expired:
		closed = true
	default:
	}
	dur := time.Until(t)
	if t.IsZero() || dur > 0 {
		if closed {
			d.expired = make(chan struct{})
		}
		if !t.IsZero() {
			ch := d.expired
			d.timer = time.AfterFunc(dur, func() { close(ch) })
		}
		return
	}
	if !closed {
		close(d.expired)
	}
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expired
}

// parseAddr turns an agent-reported address into a *net.TCPAddr or
// *net.UDPAddr.
func parseAddr(network, s string) net.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return stringAddr{network, s}
	}
	if network == "udp" {
		return net.UDPAddrFromAddrPort(ap)
	}
	return net.TCPAddrFromAddrPort(ap)
}

// stringAddr is an address the agent reported that is not IP:port.
type stringAddr struct{ network, addr string }

func (a stringAddr) Network() string { return a.network }
func (a stringAddr) String() string  { return a.addr }
