package session

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestTunnelSplicesRegisteredConnections(t *testing.T) {
	tun, err := newTunnel(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()

	// The "remote" half: one end of a pipe whose other end plays the pod's server.
	remote, server := net.Pipe()
	go func() {
		buf := make([]byte, 5)
		io.ReadFull(server, buf)
		server.Write(append([]byte("echo:"), buf...))
		server.Close()
	}()

	// Register after connecting, as the layer does: the accept side must wait.
	c, err := net.Dial("tcp", tun.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(20 * time.Millisecond)
	tun.register(c.LocalAddr().(*net.TCPAddr).AddrPort(), remote)

	c.Write([]byte("hello"))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "echo:hello" {
		t.Fatalf("got %q", got)
	}
}

func TestTunnelRegisterBeforeAccept(t *testing.T) {
	tun, err := newTunnel(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	// Reserve a local port by binding first, register, then connect from it.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	remote, server := net.Pipe()
	go func() { server.Write([]byte("hi")); server.Close() }()
	ln, _ := net.Listen("tcp4", "127.0.0.1:0") // find a free port
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	tun.register(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), remote)
	c, err := d.Dial("tcp", tun.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, _ := io.ReadAll(c)
	if string(got) != "hi" {
		t.Fatalf("got %q", got)
	}
}

func TestTunnelDropsUnclaimedConnections(t *testing.T) {
	tun, err := newTunnel(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	tun.claimTimeout.Store(int64(200 * time.Millisecond))
	c, err := net.Dial("tcp", tun.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("an unclaimed connection was not closed: %v", err)
	}
}

// A remote half registered for a local connection that never comes (or
// gave up waiting) is closed: its pod connection does not stay open.
func TestTunnelClosesUnclaimedRegistrations(t *testing.T) {
	tun, err := newTunnel(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	tun.pendingTimeout = 200 * time.Millisecond
	remote, pod := net.Pipe()
	defer pod.Close()
	tun.register(netip.MustParseAddrPort("127.0.0.1:1"), remote)
	pod.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := pod.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("an unclaimed registration was not closed: %v", err)
	}
}

// An IPV6_V6ONLY socket is redirected to [::1] on the tunnel's port.
func TestTunnelOnIPv6Loopback(t *testing.T) {
	tun, err := newTunnel(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	if tun.ln6 == nil {
		t.Fatal("no [::1] listener: the machine's lo has ::1")
	}
	remote, server := net.Pipe()
	go func() { server.Write([]byte("over ::1")); server.Close() }()
	c, err := net.Dial("tcp6", netip.AddrPortFrom(netip.IPv6Loopback(), tun.Addr().Port()).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tun.register(c.LocalAddr().(*net.TCPAddr).AddrPort(), remote)
	got, _ := io.ReadAll(c)
	if string(got) != "over ::1" {
		t.Fatalf("got %q", got)
	}
}
