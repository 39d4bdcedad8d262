// Package testnet has the loopback servers that tests of several packages
// start.
package testnet

import (
	"io"
	"net"
	"testing"
)

// Serve listens on a loopback TCP port until the test ends and hands each
// connection to handle on a goroutine of its own, closing it after. It
// returns the listener's address.
func Serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	return ServeOn(t, "127.0.0.1:0", handle)
}

// ServeOn is Serve on addr (":0": a free port on every address).
func ServeOn(t testing.TB, addr string, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return l.Addr().String()
}

// Echo is a handler sending back what it reads.
func Echo(c net.Conn) { io.Copy(c, c) }

// FreePort returns a TCP port that was free on every address a moment
// ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
