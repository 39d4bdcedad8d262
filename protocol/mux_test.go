package protocol

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
)

// writesConn records each Write it gets.
type writesConn struct {
	net.Conn
	writes [][]byte
}

func (c *writesConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func TestCoalescingConn(t *testing.T) {
	w := &writesConn{}
	c := &coalescingConn{Conn: w}
	hdr := func(typ byte, length uint32) []byte {
		h := make([]byte, muxHeaderSize)
		h[1] = typ
		binary.BigEndian.PutUint32(h[8:], length)
		return h
	}
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
	tc := &coalescingConn{Conn: client, tcp: isTCP(client)}
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
