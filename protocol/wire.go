package protocol

import (
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// yamux's frame header: version, type, flags (2), stream id (4), length (4).
const (
	muxHeaderSize       = 12
	muxTypeData         = 0
	muxTypeWindowUpdate = 1
	muxFlagSYN          = 1
	muxFlagACK          = 2
)

// Deferred frames (see wire.Defer) wait at most deferDelay, and go out at
// once past deferMax bytes.
const (
	deferDelay = 20 * time.Millisecond
	deferMax   = 64 << 10
	// closeFlushWait bounds sending what is held when the connection
	// closes.
	closeFlushWait = time.Second
	// synHold bounds how long a new stream's SYN waits for the frame that
	// follows it.
	synHold = time.Millisecond
	// ackHold bounds how long an accepted stream's ACK waits for the
	// stream's first answer.
	ackHold = 2 * time.Millisecond
)

// wire is the connection yamux writes through. It sends a data frame's
// header and body in one write: yamux writes them separately (two
// syscalls, and through a port-forward two SPDY frames that the runtime,
// kubelet, API server and client each handle apart); a data header
// announcing a body is held back and sent with the next write, which is
// that body (yamux's send loop is the only writer, and writes a data
// frame's header then its body).
//
// Data frames of deferred streams (mirror copies: nobody waits for them)
// are held up to deferDelay and sent together with what follows: at a
// thousand mirrored requests a second that is fifty frames a second for
// every process the port-forward passes through (and for the local
// process, which gets its copies in bursts), instead of a thousand; under
// that load 20 ms cost 5–22 % less CPU in all processes together than 5 ms.
// Any other frame sends them first, in order.
//
// On the helper's side, a new stream's SYN (a window update yamux sends
// alone when the stream opens) is held too, for the stream's header that
// follows at once, so the two cross the port-forward as one frame: the
// agent then reads the header when it accepts the stream, instead of a
// relay's wake-up later.
//
// On both sides, an accepted stream's ACK (a window update yamux sends
// alone on accept) waits up to ackHold for what follows, typically the
// stream's first answer: for a dial, the reply and the pod's first bytes,
// which then cross the port-forward as one frame instead of two, the
// first of them while the helper's request is still on its way in
// through the same processes (docs/agent.md, "Early dials").
// Nothing on the wire changes.
type wire struct {
	net.Conn
	unread  []byte       // read before the connection: what the agent peeked
	tcp     bool         // writev instead of copying buffers together
	vectors VectorWriter // or the connection sends them as one message

	mu      sync.Mutex // yamux's send loop and the deferred flush
	hdr     [muxHeaderSize]byte
	pending bool
	buf     []byte

	holdSYN  bool            // the helper's side: see above
	deferred map[uint32]bool // stream ids
	held     []byte          // deferred frames, in order
	timer    *time.Timer
	due      time.Time // when timer fires
	err      error     // a deferred flush's failure, for the next write
}

// VectorWriter is a connection that sends several buffers as one message
// (the helper's port-forward stream: one SPDY data frame), so a yamux
// frame's header and body need not be copied together first.
type VectorWriter interface {
	WriteVectors(bufs ...[]byte) (int, error)
}

func newWire(conn net.Conn, unread []byte, holdSYN bool) *wire {
	w := &wire{Conn: conn, unread: unread, tcp: isTCP(conn), holdSYN: holdSYN, deferred: map[uint32]bool{}}
	w.vectors, _ = conn.(VectorWriter)
	return w
}

// Read gives back the peeked bytes first (yamux's receive loop is the
// only reader).
func (w *wire) Read(b []byte) (int, error) {
	if len(w.unread) > 0 {
		n := copy(b, w.unread)
		w.unread = w.unread[n:]
		return n, nil
	}
	return w.Conn.Read(b)
}

func isTCP(c net.Conn) bool { _, ok := c.(*net.TCPConn); return ok }

// Defer holds the data frames of stream id for up to deferDelay (on) or
// stops doing so (off).
func (w *wire) Defer(id uint32, on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on {
		w.deferred[id] = true
	} else {
		delete(w.deferred, id)
	}
}

func (w *wire) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	if w.pending {
		w.pending = false
		if w.deferred[binary.BigEndian.Uint32(w.hdr[4:8])] {
			w.held = append(append(w.held, w.hdr[:]...), p...)
			if len(w.held) >= deferMax {
				return len(p), w.flushLocked()
			}
			w.holdFor(deferDelay)
			return len(p), nil
		}
		if err := w.send(w.hdr[:], p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == muxHeaderSize && p[1] == muxTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		copy(w.hdr[:], p)
		w.pending = true
		return len(p), nil
	}
	if len(p) == muxHeaderSize && p[1] == muxTypeWindowUpdate {
		flags := binary.BigEndian.Uint16(p[2:4])
		var hold time.Duration
		switch {
		case w.holdSYN && flags&muxFlagSYN != 0:
			hold = synHold
		case flags&muxFlagACK != 0:
			hold = ackHold
		}
		if hold > 0 {
			w.held = append(w.held, p...)
			w.holdFor(hold)
			return len(p), nil
		}
	}
	if err := w.send(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// send writes what is held, then bufs, as one write.
func (w *wire) send(bufs ...[]byte) error {
	if len(w.held) > 0 {
		bufs = append([][]byte{w.held}, bufs...)
		w.clearHeld()
	}
	if len(bufs) == 1 {
		_, err := w.Conn.Write(bufs[0])
		return err
	}
	switch {
	case w.vectors != nil:
		_, err := w.vectors.WriteVectors(bufs...)
		return err
	case w.tcp:
		nb := net.Buffers(bufs)
		_, err := nb.WriteTo(w.Conn)
		return err
	}
	w.buf = w.buf[:0]
	for _, b := range bufs {
		w.buf = append(w.buf, b...)
	}
	_, err := w.Conn.Write(w.buf)
	if cap(w.buf) > 1<<20 {
		w.buf = nil // an unusually large frame: don't keep its buffer
	}
	return err
}

// holdFor makes what is held go out within d at the latest: sooner than
// a wait already set, never later.
func (w *wire) holdFor(d time.Duration) {
	due := time.Now().Add(d)
	switch {
	case w.timer == nil:
		w.timer = time.AfterFunc(d, w.flushDeferred)
	case due.Before(w.due):
		w.timer.Reset(d)
	default:
		return
	}
	w.due = due
}

func (w *wire) clearHeld() {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if cap(w.held) > 1<<20 {
		w.held = nil
	} else {
		w.held = w.held[:0]
	}
}

func (w *wire) flushLocked() error {
	if len(w.held) == 0 {
		return nil
	}
	err := w.send()
	if err != nil {
		w.err = err
	}
	return err
}

func (w *wire) flushDeferred() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer = nil
	w.flushLocked()
}

// Close sends what is held first, within closeFlushWait, unless a write
// is under way: that one may be stuck on a dead connection, and only
// closing it ends the write.
func (w *wire) Close() error {
	if w.mu.TryLock() {
		if len(w.held) > 0 {
			w.Conn.SetWriteDeadline(time.Now().Add(closeFlushWait))
			w.flushLocked()
		}
		w.mu.Unlock()
	}
	return w.Conn.Close()
}
