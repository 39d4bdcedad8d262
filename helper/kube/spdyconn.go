package kube

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream/spdy"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	apispdy "k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
)

// spdyConn is one port-forward data stream over a plain SPDY/3.1 upgrade,
// as a net.Conn, spoken here instead of through client-go's spdystream.
// spdystream hands every received frame to two goroutines in turn and
// copies it out of a buffer allocated and zeroed for it; here the one
// reader (yamux's receive loop) takes a data frame's payload straight from
// the TLS connection, and a write is one data frame in one TLS write. On
// the whole path through the API server that is the client's share of the
// CPU halved (BENCHMARKS.md, "The cluster").
//
// Only what a port-forward uses is spoken: two streams this side opens
// (error and data, as kubectl's port-forward opens them), pings answered,
// every other frame read and dropped. Header blocks are (de)compressed by
// spdystream's framer, whose zlib state spans the connection.
type spdyConn struct {
	conn   net.Conn
	remote net.Addr

	// Read side: only Read (one caller at a time) touches these.
	rd       frameReader
	framer   *spdy.Framer // reads control frames from rd, writes into wbuf
	left     int          // payload bytes of the current data frame not yet read
	finAfter bool         // the current data frame ends the data stream
	ended    bool         // the data stream ended
	reset    error        // the data stream was reset
	errDone  bool         // the error stream ended
	errMsg   []byte       // what the error stream said
	replied  map[spdy.StreamId]bool

	// Write side.
	wmu  sync.Mutex
	wbuf bufferWriter // control frames, under wmu
	out  []byte       // a data frame being sent, under wmu

	closeOnce sync.Once
}

const (
	spdyErrorStream spdy.StreamId = 1
	spdyDataStream  spdy.StreamId = 3
	spdyHeaderSize                = 8
	spdyMaxData                   = 1<<24 - 1 // a data frame's 24-bit length
	spdyDataFin                   = 0x01
	// errMsgLimit bounds what is kept of the error stream.
	errMsgLimit = 4 << 10
	// upgradeTimeout bounds the upgrade request's answer, and the streams'
	// replies.
	upgradeTimeout = 30 * time.Second
	// errStreamWait is how long the end of the data stream waits for the
	// error stream's reason (the kubelet ends both, in either order).
	errStreamWait = 200 * time.Millisecond
)

// frameReader reads the connection after the bytes still buffered from
// the upgrade response, and lets a frame header read ahead be read again.
type frameReader struct {
	pending []byte
	conn    net.Conn
}

func (r *frameReader) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.conn.Read(p)
}

func (r *frameReader) unread(b []byte) {
	r.pending = append(append(make([]byte, 0, len(b)+len(r.pending)), b...), r.pending...)
}

type bufferWriter struct{ b []byte }

func (w *bufferWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// dialSPDY upgrades a request to u to SPDY/3.1 through the config's
// transport (TLS, proxy, credentials as every client-go request gets them)
// and opens the port's error and data streams. An upgrade the API server
// refuses with a Status comes back as that Status (*apierrors.StatusError).
func dialSPDY(ctx context.Context, cfg *rest.Config, u *url.URL, port int, remote net.Addr) (*spdyConn, error) {
	tlsConfig, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, err
	}
	proxy := http.ProxyFromEnvironment
	if cfg.Proxy != nil {
		proxy = cfg.Proxy
	}
	inner, err := apispdy.NewRoundTripperWithConfig(apispdy.RoundTripperConfig{TLS: tlsConfig, Proxier: proxy})
	if err != nil {
		return nil, err
	}
	up := &upgradeTripper{dial: inner.Dial}
	rt, err := rest.HTTPWrappersForConfig(cfg, up)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Add(httpstream.HeaderProtocolVersion, portforward.PortForwardProtocolV1Name)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("error sending request: %w", err)
	}
	if err := checkUpgrade(resp); err != nil {
		if up.conn != nil {
			up.conn.Close()
		}
		return nil, err
	}
	c := newSPDYConn(up.conn, up.buffered, remote)
	if err := c.open(ctx, port); err != nil {
		c.Close()
		return nil, &streamError{fmt.Errorf("port-forward to %s: %w", remote, err)}
	}
	return c, nil
}

// streamError is a failure after the upgrade succeeded (the port's
// streams): another protocol would fare no better.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// upgradeTripper sends the upgrade request on a connection of its own and
// keeps that connection for SPDY.
type upgradeTripper struct {
	dial     func(*http.Request) (net.Conn, error) // connects and writes the request
	conn     net.Conn
	buffered []byte // read past the response
}

func (t *upgradeTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Add(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	req.Header.Add(httpstream.HeaderUpgrade, apispdy.HeaderSpdy31)
	if t.conn != nil { // an auth wrapper retrying: start over
		t.conn.Close()
		t.conn, t.buffered = nil, nil
	}
	conn, err := t.dial(req)
	if err != nil {
		return nil, err
	}
	// The exchange is bounded even without a deadline in the context:
	// an upgrade that never answers must not hang the session's start.
	deadline := time.Now().Add(upgradeTimeout)
	if d, ok := req.Context().Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	// A cancelled context ends the wait too (a deadline alone would not).
	stop := context.AfterFunc(req.Context(), func() { conn.SetDeadline(aLongTimeAgo) })
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		stop()
		conn.Close()
		if cerr := req.Context().Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.buffered, _ = br.Peek(br.Buffered())
	} else {
		// Read the error body (within the deadline) before anyone closes
		// the connection.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
	}
	if !stop() {
		conn.Close() // cancelled meanwhile: its deadline may be in the past
		return nil, req.Context().Err()
	}
	conn.SetDeadline(time.Time{})
	t.conn = conn
	return resp, nil
}

// checkUpgrade turns a response that did not switch to SPDY into the
// error client-go's upgrader would give.
func checkUpgrade(resp *http.Response) error {
	connection := strings.ToLower(resp.Header.Get(httpstream.HeaderConnection))
	upgrade := strings.ToLower(resp.Header.Get(httpstream.HeaderUpgrade))
	if resp.StatusCode == http.StatusSwitchingProtocols && strings.Contains(connection, "upgrade") &&
		strings.Contains(upgrade, strings.ToLower(apispdy.HeaderSpdy31)) {
		return nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return &httpstream.UpgradeFailureError{Cause: errors.New("unable to read error from server response")}
	}
	var status metav1.Status
	if json.Unmarshal(body, &status) == nil && status.Kind == "Status" {
		return &apierrors.StatusError{ErrStatus: status}
	}
	msg := strings.TrimSpace(string(body))
	if msg == "" {
		msg = resp.Status
	}
	return &httpstream.UpgradeFailureError{Cause: errors.New(msg)}
}

func newSPDYConn(conn net.Conn, buffered []byte, remote net.Addr) *spdyConn {
	c := &spdyConn{conn: conn, remote: remote, replied: map[spdy.StreamId]bool{}}
	c.rd = frameReader{pending: buffered, conn: conn}
	c.framer, _ = spdy.NewFramer(&c.wbuf, &c.rd) // fails only for nil arguments
	return c
}

// open creates the error and data streams and waits for their replies
// (the kubelet's side drops data sent on a stream before it replied) or
// for their end: a port nothing listens on is reported by Read, so that a
// caller waiting for the port to open sees one kind of failure.
func (c *spdyConn) open(ctx context.Context, port int) error {
	deadline := time.Now().Add(upgradeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.conn.SetDeadline(deadline)
	defer c.conn.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	headers := func(kind string) http.Header {
		h := http.Header{}
		h.Set(corev1.StreamType, kind)
		h.Set(corev1.PortHeader, strconv.Itoa(port))
		h.Set(corev1.PortForwardRequestIDHeader, "0")
		return h
	}
	if err := c.writeControl(
		&spdy.SynStreamFrame{StreamId: spdyErrorStream, Headers: headers(corev1.StreamTypeError)},
		&spdy.SynStreamFrame{StreamId: spdyDataStream, Headers: headers(corev1.StreamTypeData)},
	); err != nil {
		return c.ctxErr(ctx, fmt.Errorf("creating the streams: %w", err))
	}
	for !c.replied[spdyErrorStream] || !c.replied[spdyDataStream] {
		if c.ended || c.reset != nil {
			break // the port failed: Read says why, as when it fails later
		}
		if err := c.readFrame(); err != nil {
			return c.ctxErr(ctx, fmt.Errorf("waiting for the streams: %w", err))
		}
		if c.left > 0 {
			break // data: the stream was accepted; Read takes it
		}
	}
	// Nothing is written to the error stream: half-close it, as kubectl does.
	return c.writeEmptyData(spdyErrorStream, spdyDataFin)
}

func (c *spdyConn) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// aLongTimeAgo is a deadline in the past, to wake a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

func (c *spdyConn) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.ended || c.reset != nil {
			if err := c.endReason(); err != io.EOF {
				return 0, fmt.Errorf("port-forward to %s: %w", c.remote, err)
			}
			return 0, io.EOF
		}
		if err := c.readFrame(); err != nil {
			if err == io.EOF {
				// The connection ended, not the stream (no FIN): what
				// came may be cut short.
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	// The frame's rest, not one TLS record of it: the sender wrote it
	// whole, so it is on its way, and a bulk download's reader (a local
	// socket's writer) then moves 32 KiB frames rather than 16 KiB records.
	n, err := io.ReadFull(&c.rd, p)
	c.left -= n
	if c.left == 0 && c.finAfter {
		c.ended = true
	}
	if n > 0 {
		return n, nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // in the middle of a frame
	}
	return 0, err
}

// readFrame reads one frame: a data frame's header (its payload is left
// for Read), or a whole frame of any other stream or kind.
func (c *spdyConn) readFrame() error {
	var hdr [spdyHeaderSize]byte
	if _, err := io.ReadFull(&c.rd, hdr[:]); err != nil {
		return err
	}
	if hdr[0]&0x80 != 0 {
		c.rd.unread(hdr[:])
		frame, err := c.framer.ReadFrame()
		if err != nil {
			return fmt.Errorf("reading a SPDY control frame: %w", err)
		}
		return c.control(frame)
	}
	id := spdy.StreamId(binary.BigEndian.Uint32(hdr[:4]) & 0x7fffffff)
	fin := hdr[4]&spdyDataFin != 0
	length := int(hdr[5])<<16 | int(hdr[6])<<8 | int(hdr[7])
	switch id {
	case spdyDataStream:
		c.left, c.finAfter = length, fin
		if length == 0 && fin {
			c.ended = true
		}
		return nil
	case spdyErrorStream:
		keep := min(length, max(errMsgLimit-len(c.errMsg), 0))
		buf := make([]byte, keep)
		if _, err := io.ReadFull(&c.rd, buf); err != nil {
			return err
		}
		c.errMsg = append(c.errMsg, buf...)
		if _, err := io.CopyN(io.Discard, &c.rd, int64(length-keep)); err != nil {
			return err
		}
		c.errDone = c.errDone || fin
		return nil
	}
	_, err := io.CopyN(io.Discard, &c.rd, int64(length))
	return err
}

func (c *spdyConn) control(frame spdy.Frame) error {
	switch f := frame.(type) {
	case *spdy.SynReplyFrame:
		c.replied[f.StreamId] = true
		if f.CFHeader.Flags&spdy.ControlFlagFin != 0 {
			c.streamEnded(f.StreamId)
		}
	case *spdy.RstStreamFrame:
		switch f.StreamId {
		case spdyDataStream:
			c.reset = fmt.Errorf("the stream was reset (SPDY status %d)", f.Status)
		case spdyErrorStream:
			c.errDone = true
		}
	case *spdy.HeadersFrame:
		if f.CFHeader.Flags&spdy.ControlFlagFin != 0 {
			c.streamEnded(f.StreamId)
		}
	case *spdy.PingFrame:
		if f.Id%2 == 0 { // the server's ping (ours would be odd): answer it
			return c.writeControl(&spdy.PingFrame{Id: f.Id})
		}
	case *spdy.SynStreamFrame:
		// The server opens no streams in a port-forward.
		return c.writeControl(&spdy.RstStreamFrame{StreamId: f.StreamId, Status: spdy.RefusedStream})
	}
	// Settings, window updates, go-away: nothing to do for one stream
	// (spdystream, the other end, does no flow control).
	return nil
}

func (c *spdyConn) streamEnded(id spdy.StreamId) {
	switch id {
	case spdyDataStream:
		c.ended = true
	case spdyErrorStream:
		c.errDone = true
	}
}

// endReason is why the data stream ended: the error stream's reason if
// it gives one within errStreamWait, else a reset, else EOF.
func (c *spdyConn) endReason() error {
	if !c.errDone {
		c.conn.SetReadDeadline(time.Now().Add(errStreamWait))
		for !c.errDone && c.left == 0 {
			if c.readFrame() != nil {
				break
			}
		}
		c.conn.SetReadDeadline(time.Time{})
		c.errDone = true
	}
	if msg := strings.TrimSpace(string(c.errMsg)); msg != "" {
		return errors.New(msg)
	}
	if c.reset != nil {
		return c.reset
	}
	return io.EOF
}

func (c *spdyConn) writeControl(frames ...spdy.Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf.b = c.wbuf.b[:0]
	for _, f := range frames {
		if err := c.framer.WriteFrame(f); err != nil {
			return err
		}
	}
	_, err := c.conn.Write(c.wbuf.b)
	return err
}

func (c *spdyConn) Write(p []byte) (int, error) { return c.WriteVectors(p) }

// WriteVectors sends bufs, together, as the data stream's next bytes: one
// frame (more only past a frame's 16 MiB) in one write.
func (c *spdyConn) WriteVectors(bufs ...[]byte) (int, error) {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if total == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	sent, i, off := 0, 0, 0 // bufs[i][off:] is next
	for sent < total {
		size := min(total-sent, spdyMaxData)
		out := appendDataHeader(c.out[:0], spdyDataStream, 0, size)
		for size > 0 {
			n := min(size, len(bufs[i])-off)
			out = append(out, bufs[i][off:off+n]...)
			size -= n
			if off += n; off == len(bufs[i]) {
				i, off = i+1, 0
			}
		}
		if _, err := c.conn.Write(out); err != nil {
			return sent, err
		}
		sent += len(out) - spdyHeaderSize
		if cap(out) <= 1<<20 {
			c.out = out // kept unless a frame was unusually large
		}
	}
	return sent, nil
}

// writeEmptyData sends an empty data frame with flags on stream id.
func (c *spdyConn) writeEmptyData(id spdy.StreamId, flags byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(appendDataHeader(nil, id, flags, 0))
	return err
}

func appendDataHeader(b []byte, id spdy.StreamId, flags byte, length int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(id)&0x7fffffff)
	return append(b, flags, byte(length>>16), byte(length>>8), byte(length))
}

func (c *spdyConn) Close() error {
	c.closeOnce.Do(func() { c.conn.Close() })
	return nil
}

func (c *spdyConn) LocalAddr() net.Addr                { return podAddr("doppel") }
func (c *spdyConn) RemoteAddr() net.Addr               { return c.remote }
func (c *spdyConn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *spdyConn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *spdyConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
