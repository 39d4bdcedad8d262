package incoming

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/protocol"
)

// pipeHandoff hands each mirror copy to a pipe the test reads.
type pipeHandoff struct {
	fakeSession
	got chan net.Conn
}

func (p pipeHandoff) OpenIncoming(context.Context, protocol.IncomingHeader) (net.Conn, error) {
	a, b := net.Pipe()
	p.got <- b
	return a, nil
}

// A connection's client bytes reach the mirror once and in order, whatever
// the order and repetition of the captured segments.
func TestSniffReassembly(t *testing.T) {
	h := pipeHandoff{fakeSession("m"), make(chan net.Conn, 1)}
	sink := newMirrorSink(context.Background(), h, protocol.IncomingHeader{}, slog.New(slog.DiscardHandler))
	c := &sniffConn{early: map[uint32][]byte{}, sinks: []*mirrorSink{sink}, next: 1000}
	const isn = 1000
	seg := func(off int, s string) { c.accept(uint32(isn+off), []byte(s)) }
	seg(0, "GET / ")      // in order
	seg(0, "GET / ")      // retransmitted
	seg(11, "1.1\r\n")    // early
	seg(3, " / HTTP/")    // overlaps what was seen, then fills the gap
	seg(16, "\r\n")       // in order after the early one drained
	seg(9, "P/1.1\r\n\r") // seen before, all of it
	if c.next != isn+18 || len(c.early) != 0 || c.earlyN != 0 {
		t.Fatalf("next %d (want %d), early %v", c.next, isn+18, c.early)
	}
	sink.finish()
	conn := <-h.got
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(conn)
	if string(got) != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("mirror got %q", got)
	}
}

// The filter passes TCP to the subscribed ports only.
func TestSniffFilterLayout(t *testing.T) {
	p := sniffFilter(map[uint16]bool{8080: true, 9090: true})
	if len(p) != 13+2+2 {
		t.Fatalf("%d instructions", len(p))
	}
	for i, ins := range p {
		if ins.Code&0x07 == 0x05 && ins.Code != 0x05 { // conditional jumps
			if i+1+int(ins.Jt) >= len(p) || i+1+int(ins.Jf) >= len(p) {
				t.Fatalf("instruction %d jumps out of the program: %+v", i, ins)
			}
		}
	}
	if len(sniffFilter(nil)) != 1 {
		t.Fatal("no ports must reject everything")
	}
}
