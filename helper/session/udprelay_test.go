package session

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
)

// datagramPipe is a net.Conn pair that keeps datagram boundaries, standing
// in for an agent datagram stream (net.Pipe preserves write boundaries).
func TestUDPRelayCarriesDatagramsBothWays(t *testing.T) {
	remote, pod := net.Pipe()
	go func() { // the pod side echoes each datagram with a prefix
		buf := make([]byte, 1500)
		for {
			n, err := pod.Read(buf)
			if err != nil {
				return
			}
			pod.Write(append([]byte("pod:"), buf[:n]...))
		}
	}()
	done := make(chan struct{})
	r, err := newUDPRelay(slog.New(slog.DiscardHandler), remote, time.Minute, func() { close(done) })
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(r.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.setPeer(c.LocalAddr().(*net.UDPAddr).AddrPort())
	for _, msg := range []string{"one", "two"} {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "pod:"+msg {
			t.Fatalf("got %q %v", buf[:n], err)
		}
	}
	// A stranger's datagrams are not forwarded.
	s, _ := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(r.Addr()))
	defer s.Close()
	s.Write([]byte("intruder"))
	s.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := s.Read(make([]byte, 100)); err == nil {
		t.Fatalf("a stranger got %d bytes back", n)
	}
	r.Close()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("onDone not called")
	}
}

func TestUDPRelayClosesWhenIdle(t *testing.T) {
	remote, _ := net.Pipe()
	done := make(chan struct{})
	_, err := newUDPRelay(slog.New(slog.DiscardHandler), remote, 100*time.Millisecond, func() { close(done) })
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("an idle relay stayed open")
	}
}

// An unconnected socket bound to the wildcard address: the layer reports
// 0.0.0.0:PORT, its datagrams come from 127.0.0.1:PORT.
func TestUDPRelayPeerBoundToWildcard(t *testing.T) {
	remote, pod := net.Pipe()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, err := pod.Read(buf)
			if err != nil {
				return
			}
			pod.Write(append([]byte("pod:"), buf[:n]...))
		}
	}()
	r, err := newUDPRelay(slog.New(slog.DiscardHandler), remote, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, wildcard := range []string{"0.0.0.0", "::"} {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(wildcard)})
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		r.setPeer(netip.AddrPortFrom(netip.MustParseAddr(wildcard), uint16(port)))
		if _, err := c.WriteToUDPAddrPort([]byte("hi"), r.Addr()); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != "pod:hi" {
			t.Errorf("%s: got %q, %v", wildcard, buf[:n], err)
		}
		c.Close()
	}
}

// A relay whose process socket is closed notices and closes, giving its
// agent stream back, long before the idle window.
func TestUDPRelayClosesWhenThePeerSocketIsGone(t *testing.T) {
	remote, _ := net.Pipe()
	done := make(chan struct{})
	r, err := newUDPRelay(slog.New(slog.DiscardHandler), remote, time.Hour, func() { close(done) })
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(r.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	r.setPeer(c.LocalAddr().(*net.UDPAddr).AddrPort())
	if r.peerGone() {
		t.Fatal("a live socket counts as gone")
	}
	// Bound to the wildcard address: alive too.
	w, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	r.setPeer(netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(w.LocalAddr().(*net.UDPAddr).Port)))
	if r.peerGone() {
		t.Error("a live wildcard socket counts as gone")
	}
	w.Close()
	r.setPeer(c.LocalAddr().(*net.UDPAddr).AddrPort())
	c.Close()
	select {
	case <-done:
	case <-time.After(3 * relayLivenessEvery):
		t.Fatal("the relay of a closed socket stayed open")
	}
}
