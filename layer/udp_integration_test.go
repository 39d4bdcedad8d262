//go:build integration && linux

package layer_test

import (
	"testing"

	"github.com/doppel-dev/doppel/layer"
	"github.com/doppel-dev/doppel/layer/seccomp"
)

// TestUDPRedirect: a datagram to a remote address on an unconnected socket
// (sendto, sendmsg or sendmmsg) goes to a loopback echo server instead, and
// the reply reaches the program.
func TestUDPRedirect(t *testing.T) {
	requireRoot(t)
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			echo := udpEcho(t)
			h := newHandler()
			h.redirect(remoteUDP, echo)
			r := run(t, h, runOpts{filter: seccomp.Options{UDP: true}}, p.argv(t, "udp", remoteUDP.String(), "ping-"+p.name)...)
			if r.code != 0 {
				t.Fatalf("exit %d", r.code)
			}
			wantContains(t, "output", r.stdout, "reply=echo:ping-"+p.name)
			h.checkNoLeak(t)
			var sent bool
			for _, c := range h.connects {
				sent = sent || (c.Proto == layer.UDP && c.Call == layer.CallSendTo && c.Dst == remoteUDP)
			}
			if !sent {
				t.Errorf("no UDP send request in %+v", h.connects)
			}
		})
	}
}

// TestUDPConnected: connect(2) on a UDP socket is redirected like TCP, and
// the program sees the original peer.
func TestUDPConnected(t *testing.T) {
	requireRoot(t)
	echo := udpEcho(t)
	h := newHandler()
	h.redirect(remoteUDP, echo)
	r := run(t, h, runOpts{}, buildProbe(t, "static"), "udpconn", remoteUDP.String(), "hi")
	wantContains(t, "output", r.stdout, "reply=echo:hi", "peer="+remoteUDP.String())
}
