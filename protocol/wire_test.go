package protocol

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
)

// writesConn records each Write it gets.
type writesConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *writesConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (c *writesConn) Close() error                     { return nil }
func (c *writesConn) SetWriteDeadline(time.Time) error { return nil }

func (c *writesConn) got() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.writes...)
}

// frameHeader is a yamux header of type typ for stream id.
func frameHeader(typ byte, id, length uint32) []byte {
	h := make([]byte, muxHeaderSize)
	h[1] = typ
	binary.BigEndian.PutUint32(h[4:], id)
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

func TestWireCoalescesHeaderAndBody(t *testing.T) {
	w := &writesConn{}
	c := newWire(w, nil, false)
	hdr := func(typ byte, length uint32) []byte { return frameHeader(typ, 1, length) }
	body := bytes.Repeat([]byte("x"), 100)
	// A data header and its body go out as one write, and each Write
	// reports its own length.
	if n, err := c.Write(hdr(muxTypeData, 100)); n != muxHeaderSize || err != nil {
		t.Fatalf("header: %d, %v", n, err)
	}
	if len(w.writes) != 0 {
		t.Fatal("the data header went out alone")
	}
	if n, err := c.Write(body); n != len(body) || err != nil {
		t.Fatalf("body: %d, %v", n, err)
	}
	// A window update (no body) goes out at once.
	c.Write(hdr(1, 5))
	if len(w.writes) != 2 || !bytes.Equal(w.writes[0], append(hdr(muxTypeData, 100), body...)) ||
		!bytes.Equal(w.writes[1], hdr(1, 5)) {
		t.Fatalf("writes: %q", w.writes)
	}
	// Over TCP the two go out with writev.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	tc := newWire(client, nil, false)
	if !tc.tcp {
		t.Fatal("a TCP connection was not recognized")
	}
	tc.Write(hdr(muxTypeData, 100))
	if n, err := tc.Write(body); n != len(body) || err != nil {
		t.Fatalf("tcp body: %d, %v", n, err)
	}
	client.Close()
	var got bytes.Buffer
	got.ReadFrom(server)
	if !bytes.Equal(got.Bytes(), append(hdr(muxTypeData, 100), body...)) {
		t.Fatalf("tcp got %q", got.Bytes())
	}
}

func TestWireDefersMirrorFrames(t *testing.T) {
	w := &writesConn{}
	c := newWire(w, nil, false)
	c.Defer(2, true)
	frame := func(id uint32, body string) {
		t.Helper()
		if _, err := c.Write(frameHeader(muxTypeData, id, uint32(len(body)))); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Write([]byte(body)); n != len(body) || err != nil {
			t.Fatalf("body: %d, %v", n, err)
		}
	}
	// A deferred stream's frames wait; the next other frame takes them
	// along, in order, in one write.
	frame(2, "copy-1")
	frame(2, "copy-2")
	if len(w.got()) != 0 {
		t.Fatalf("deferred frames went out at once: %q", w.got())
	}
	frame(1, "reply")
	want := bytes.Join([][]byte{
		frameHeader(muxTypeData, 2, 6), []byte("copy-1"),
		frameHeader(muxTypeData, 2, 6), []byte("copy-2"),
		frameHeader(muxTypeData, 1, 5), []byte("reply"),
	}, nil)
	if got := w.got(); len(got) != 1 || !bytes.Equal(got[0], want) {
		t.Fatalf("writes %q, want one %q", got, want)
	}
	// Alone, they go out after deferDelay.
	frame(2, "copy-3")
	time.Sleep(deferDelay + 20*time.Millisecond)
	if got := w.got(); len(got) != 2 || !bytes.Equal(got[1], append(frameHeader(muxTypeData, 2, 6), "copy-3"...)) {
		t.Fatalf("after the delay: %q", got)
	}
	// Past deferMax at once.
	frame(2, string(bytes.Repeat([]byte("x"), deferMax)))
	if got := w.got(); len(got) != 3 {
		t.Fatalf("%d writes after a frame past deferMax, want 3", len(got))
	}
	// A window update (the stream's FIN) sends them too; and no longer
	// deferred, the stream's frames go at once.
	frame(2, "copy-4")
	c.Write(frameHeader(1, 2, 0))
	c.Defer(2, false)
	frame(2, "late")
	if got := w.got(); len(got) != 5 || !bytes.HasSuffix(got[3], frameHeader(1, 2, 0)) ||
		!bytes.HasPrefix(got[3], append(frameHeader(muxTypeData, 2, 6), "copy-4"...)) {
		t.Fatalf("writes after the window update: %q", got[3:])
	}
	// Close sends what is held.
	c.Defer(4, true)
	frame(4, "last")
	c.Close()
	if got := w.got(); len(got) != 6 || !bytes.Equal(got[5], append(frameHeader(muxTypeData, 4, 4), "last"...)) {
		t.Fatalf("close left %q", got[5:])
	}
}

// Close ends a write stuck on a connection nobody reads, rather than
// waiting for it.
func TestWireCloseEndsAStuckWrite(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := newWire(a, nil, false)
	done := make(chan error, 1)
	go func() {
		c.Write(frameHeader(muxTypeData, 1, 5))
		_, err := c.Write([]byte("stuck")) // net.Pipe: blocks until read
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a write stuck on the connection")
	}
	if err := <-done; err == nil {
		t.Error("the stuck write succeeded after Close")
	}
}

// TestWireHoldsSYN: on the helper's side a new stream's SYN goes out with
// the frame that follows it, or alone after synHold; other window updates,
// and the agent's side, do not wait.
func TestWireHoldsSYN(t *testing.T) {
	syn := frameHeader(muxTypeWindowUpdate, 3, 0)
	binary.BigEndian.PutUint16(syn[2:4], muxFlagSYN)
	body := []byte("header")

	w := &writesConn{}
	c := newWire(w, nil, true)
	if n, err := c.Write(syn); n != muxHeaderSize || err != nil {
		t.Fatalf("syn: %d, %v", n, err)
	}
	if len(w.got()) != 0 {
		t.Fatal("the SYN went out alone")
	}
	c.Write(frameHeader(muxTypeData, 3, uint32(len(body))))
	c.Write(body)
	want := append(append(append([]byte(nil), syn...), frameHeader(muxTypeData, 3, uint32(len(body)))...), body...)
	if got := w.got(); len(got) != 1 || !bytes.Equal(got[0], want) {
		t.Fatalf("writes: %q, want one: %q", got, want)
	}

	// Nothing follows: it goes out alone, soon.
	c.Write(syn)
	deadline := time.Now().Add(time.Second)
	for len(w.got()) < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := w.got(); len(got) != 2 || !bytes.Equal(got[1], syn) {
		t.Fatalf("a lone SYN: writes %q", got)
	}

	// A window update without SYN, and any frame on the agent's side, go
	// out at once.
	c.Write(frameHeader(muxTypeWindowUpdate, 3, 5))
	if len(w.got()) != 3 {
		t.Fatal("a window update waited")
	}
	a := &writesConn{}
	newWire(a, nil, false).Write(syn)
	if len(a.got()) != 1 {
		t.Fatal("the agent's side held a SYN")
	}
}

// TestWireHoldsACK: on both sides an accepted stream's ACK goes out with
// the frame that follows it (the stream's first answer), or alone after
// ackHold.
func TestWireHoldsACK(t *testing.T) {
	ack := frameHeader(muxTypeWindowUpdate, 4, 16<<20)
	binary.BigEndian.PutUint16(ack[2:4], muxFlagACK)
	body := []byte("reply and the pod's first bytes")
	for _, helperSide := range []bool{false, true} {
		w := &writesConn{}
		c := newWire(w, nil, helperSide)
		c.Write(ack)
		if len(w.got()) != 0 {
			t.Fatalf("helper side %v: the ACK went out alone", helperSide)
		}
		c.Write(frameHeader(muxTypeData, 4, uint32(len(body))))
		c.Write(body)
		want := append(append(append([]byte(nil), ack...), frameHeader(muxTypeData, 4, uint32(len(body)))...), body...)
		if got := w.got(); len(got) != 1 || !bytes.Equal(got[0], want) {
			t.Fatalf("helper side %v: writes %q, want one: %q", helperSide, got, want)
		}
		start := time.Now()
		c.Write(ack)
		for len(w.got()) < 2 && time.Since(start) < time.Second {
			time.Sleep(100 * time.Microsecond)
		}
		if got := w.got(); len(got) != 2 || !bytes.Equal(got[1], ack) {
			t.Fatalf("helper side %v: a lone ACK: writes %q", helperSide, got)
		}
		if waited := time.Since(start); waited < ackHold {
			t.Errorf("helper side %v: a lone ACK went out after %v, before ackHold", helperSide, waited)
		}
	}
}
