//go:build integration && linux

package layer_test

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/layer"
	"github.com/doppel-dev/doppel/layer/launcher"
)

// TestListenRebind: the port the program asks for is taken locally, so the
// supervisor binds another; the program still reports the requested port and
// the handler learns both.
func TestListenRebind(t *testing.T) {
	requireRoot(t)
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer taken.Close()
			requested := netip.MustParseAddrPort(taken.Addr().String())
			h := newHandler()
			accepted := make(chan string, 1)
			r := run(t, h, runOpts{started: func(tree *launcher.Tree) {
				go func() { accepted <- dialListening(t, h) }()
			}}, p.argv(t, "listen", requested.String())...)
			if r.code != 0 {
				t.Fatalf("exit %d", r.code)
			}
			if got := <-accepted; got != "hello from probe\n" {
				t.Errorf("the program's listener answered %q", got)
			}
			wantContains(t, "output", r.stdout, "addr="+requested.String())
			ls := h.listens()
			if len(ls) != 1 || ls[0].proto != layer.TCP || ls[0].requested != requested || ls[0].actual.Port() == requested.Port() {
				t.Errorf("Listening calls %+v, want one TCP with requested %v and another actual port", ls, requested)
			}
		})
	}
}

// dialListening waits for the handler to learn of a listener and connects
// to where it really listens.
func dialListening(t *testing.T, h *testHandler) string {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ls := h.listens(); len(ls) > 0 {
			c, err := net.DialTimeout("tcp", ls[0].actual.String(), 5*time.Second)
			if err != nil {
				return "dial: " + err.Error()
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil && err != io.EOF {
				return "read: " + err.Error()
			}
			return line
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "no Listening call"
}

// TestListenAnyPort: a listener on port 0 is reported with requested port 0
// (the kernel chose; nothing in the pod could know the port, so the session
// subscribes nothing for it) and the port it got as actual.
func TestListenAnyPort(t *testing.T) {
	requireRoot(t)
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			h := newHandler()
			accepted := make(chan string, 1)
			r := run(t, h, runOpts{started: func(tree *launcher.Tree) {
				go func() { accepted <- dialListening(t, h) }()
			}}, p.argv(t, "listen", "127.0.0.1:0")...)
			if r.code != 0 {
				t.Fatalf("exit %d", r.code)
			}
			if got := <-accepted; got != "hello from probe\n" {
				t.Errorf("the program's listener answered %q", got)
			}
			ls := h.listens()
			if len(ls) != 1 || ls[0].proto != layer.TCP || ls[0].requested != netip.MustParseAddrPort("127.0.0.1:0") || ls[0].actual.Port() == 0 {
				t.Fatalf("Listening calls %+v, want one TCP with requested 127.0.0.1:0 and the kernel's port as actual", ls)
			}
			wantContains(t, "output", r.stdout, "addr="+ls[0].actual.String())
		})
	}
}

// TestListenOnThePodsAddress: a program that listens on the pod's own
// address (its hostname resolves to it in the pod's /etc/hosts) listens on
// loopback instead of failing with EADDRNOTAVAIL.
func TestListenOnThePodsAddress(t *testing.T) {
	requireRoot(t)
	podIP := netip.MustParseAddrPort("10.77.0.9:0")
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			h := newHandler()
			accepted := make(chan string, 1)
			r := run(t, h, runOpts{started: func(tree *launcher.Tree) {
				go func() { accepted <- dialListening(t, h) }()
			}}, p.argv(t, "listen", podIP.String())...)
			if r.code != 0 {
				t.Fatalf("exit %d", r.code)
			}
			if got := <-accepted; got != "hello from probe\n" {
				t.Errorf("the program's listener answered %q", got)
			}
			ls := h.listens()
			if len(ls) != 1 || !ls[0].actual.Addr().Unmap().IsLoopback() {
				t.Fatalf("Listening calls %+v, want one on a loopback address", ls)
			}
		})
	}
}
