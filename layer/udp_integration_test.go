//go:build integration && linux

package layer_test

import (
	"testing"
	"time"

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

// udpSenderScript receives on an unconnected, blocking UDP socket: a
// recvfrom that waits for the (delayed) answer, one that runs out of its
// SO_RCVTIMEO, and a recvmsg.
const udpSenderScript = `
import errno, socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
dst = (host, int(port))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"one", dst)
data, frm = s.recvfrom(100)
print("reply=%s from=%s:%d" % (data.decode(), frm[0], frm[1]))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 300000))
try:
    s.recvfrom(100)
    print("late=data")
except OSError as e:
    print("late=%s" % errno.errorcode[e.errno])
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 5, 0))
s.sendto(b"two", dst)
data, anc, flags, frm = s.recvmsg(100)
print("msg=%s msgfrom=%s:%d" % (data.decode(), frm[0], frm[1]))
`

// TestUDPSenderIsTheDestination: the answer to a redirected datagram comes
// from the session's relay, yet recvfrom and recvmsg report the address
// the program sent to — on a blocking socket too, whose wait runs in the
// supervisor within SO_RCVTIMEO. The Go probe receives on a non-blocking
// socket, with recvfrom and with recvmmsg.
func TestUDPSenderIsTheDestination(t *testing.T) {
	requireRoot(t)
	h := newHandler()
	h.redirect(remoteUDP, udpEchoAfter(t, 300*time.Millisecond))
	r := run(t, h, runOpts{filter: seccomp.Options{UDP: true}}, "python3", "-c", udpSenderScript, remoteUDP.String())
	wantContains(t, "output", r.stdout, "reply=echo:one from="+remoteUDP.String(), "late=EAGAIN",
		"msg=echo:two msgfrom="+remoteUDP.String())
	// The second datagram names the socket's local address, bound by the
	// first: a session takes the same relay for it, not a new one.
	var sends []layer.ConnectRequest
	for _, c := range h.connects {
		if c.Call == layer.CallSendTo && c.Dst == remoteUDP {
			sends = append(sends, c)
		}
	}
	if len(sends) != 2 || sends[0].Local.IsValid() || sends[1].Local.Port() == 0 {
		t.Errorf("the sends' local addresses: %+v; want none for the first, the bound one for the second", sends)
	}

	h = newHandler()
	h.redirect(remoteUDP, udpEcho(t))
	r = run(t, h, runOpts{filter: seccomp.Options{UDP: true}}, buildProbe(t, "static"), "udp", remoteUDP.String(), "go")
	wantContains(t, "output", r.stdout, "reply=echo:go from="+remoteUDP.String())

	// recvmmsg (x/net's ReadBatch).
	h = newHandler()
	h.redirect(remoteUDP, udpEcho(t))
	r = run(t, h, runOpts{filter: seccomp.Options{UDP: true}}, buildProbe(t, "static"), "udpbatch", remoteUDP.String(), "go")
	wantContains(t, "output", r.stdout, "reply=echo:go1 from="+remoteUDP.String(), "reply=echo:go2 from="+remoteUDP.String())
}

// udpInterruptScript waits on blocking receives that no answer ends: an
// alarm's handler must interrupt the first, as it would the kernel's own
// wait, and a shutdown from another thread must end the second with 0.
const udpInterruptScript = `
import signal, socket, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
dst = (host, int(port))
def on_alarm(*_):
    raise TimeoutError("alarm")
signal.signal(signal.SIGALRM, on_alarm)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"one", dst)
signal.alarm(1)
t0 = time.monotonic()
try:
    s.recvfrom(100)
    print("got=data")
except TimeoutError:
    print("interrupted=%d" % round(time.monotonic() - t0))
s2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s2.sendto(b"two", dst)
def stop():
    try:
        s2.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # ENOTCONN on an unconnected socket, which is shut down all the same
threading.Timer(0.5, stop).start()
data, _ = s2.recvfrom(100)
print("after-shutdown=%r" % data)
`

// TestUDPReceiveInterrupted: a blocking receive the supervisor waits for is
// interrupted by a signal and ended by shutdown(2), as the kernel's is.
func TestUDPReceiveInterrupted(t *testing.T) {
	requireRoot(t)
	h := newHandler()
	h.redirect(remoteUDP, udpEchoAfter(t, 20*time.Second))
	start := time.Now()
	r := run(t, h, runOpts{filter: seccomp.Options{UDP: true}}, "python3", "-c", udpInterruptScript, remoteUDP.String())
	wantContains(t, "output", r.stdout, "interrupted=1", "after-shutdown=b''")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the script took %s", took)
	}
}
