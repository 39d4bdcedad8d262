package layer

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"golang.org/x/sys/unix"
)

// errGone: the caller stopped waiting while the supervisor worked.
var errGone = errors.New("layer: caller gone")

// readSockaddr reads the sockaddr argument of the caller. ok is false when it
// cannot be read or is no IP address: the call then continues unchanged
// (AF_UNIX paths, abstract names and credentials stay untouched).
func (c *call) readSockaddr(addr, size uint64) (raw []byte, dst netip.AddrPort, ok bool) {
	if addr == 0 || size < 2 || size > maxSockaddr {
		return nil, dst, false
	}
	raw = make([]byte, size)
	if c.read(addr, raw) != nil {
		return nil, dst, false
	}
	dst, ok = decodeSockaddr(raw)
	return raw, dst, ok
}

// decide asks the Handler about a connection or datagram to dst.
func (c *call) decide(s socket, how Call, dst netip.AddrPort) ConnectVerdict {
	return c.s.h.Connect(c.s.ctx, c.connectRequest(s, how, dst))
}

func (c *call) connectRequest(s socket, how Call, dst netip.AddrPort) ConnectRequest {
	r := ConnectRequest{Process: c.id, Proto: s.proto(), Call: how, Dst: dst, SocketFamily: s.family}
	if s.typ == unix.SOCK_DGRAM && how == CallSendTo {
		// A socket that sent before is bound: its next datagrams can
		// take the same relay.
		if local := s.localAddr(); local.Port() != 0 {
			r.Local = local
		}
	}
	return r
}

// failVerdict answers a Fail verdict.
func (c *call) failVerdict(v ConnectVerdict) {
	if v.Errno == 0 {
		c.fail(unix.ECONNREFUSED)
		return
	}
	c.fail(v.Errno)
}

// redirectTarget is v.Redirect as a sockaddr for s.
func redirectTarget(s socket, v ConnectVerdict) ([]byte, error) {
	return encodeSockaddr(s.family, v.Redirect, s.v6only())
}

// connect: connect(fd, addr, addrlen). A redirect connects the process's own
// socket, from the supervisor, to the session: options set before connect,
// epoll registrations and non-blocking EINPROGRESS all keep working, which
// replacing the fd would break.
func (s *Supervisor) connect(c *call) {
	if p := c.readConnect(); p != nil {
		s.finishConnect(c, p)
	}
}

// pendingConnect is a connect read and not answered yet: its sockaddr and
// the supervisor's copy of the socket.
type pendingConnect struct {
	sock socket
	raw  []byte
	dst  netip.AddrPort
}

// readConnect reads a connect's sockaddr and duplicates its socket; nil
// (the call continued) when it is no IP connect of an IP socket.
func (c *call) readConnect() *pendingConnect {
	raw, dst, ok := c.readSockaddr(c.arg(1), c.arg(2))
	if !ok || !c.valid() {
		c.cont()
		return nil
	}
	sock, ok := c.openSocket(c.arg(0))
	if !ok {
		c.cont()
		return nil
	}
	if _, redirected := c.s.peers.get(sock.inode()); redirected && sock.connectedOrConnecting() {
		// Connect again on a connected socket (Ruby's connect_nonblock
		// looks for EISCONN so): the kernel answers, no second dial.
		sock.close()
		c.cont()
		return nil
	}
	return &pendingConnect{sock: sock, raw: raw, dst: dst}
}

// quickConnect answers a connect on the receive loop when the handler can
// decide it without waiting (QuickConnects) and the socket is non-blocking.
// Otherwise it answers nothing and returns what it read, for
// finishConnect on a goroutine.
func (s *Supervisor) quickConnect(c *call, qc QuickConnects) *pendingConnect {
	p := c.readConnect()
	if p == nil || !p.sock.nonBlocking() {
		return p
	}
	v, decided := qc.QuickConnect(s.ctx, c.connectRequest(p.sock, CallConnect, p.dst))
	if !decided {
		return p
	}
	s.carryOutConnect(c, p.sock, p.raw, p.dst, v)
	p.sock.close()
	return nil
}

// finishConnect asks the handler about a connect quickConnect left.
func (s *Supervisor) finishConnect(c *call, p *pendingConnect) {
	defer p.sock.close()
	s.carryOutConnect(c, p.sock, p.raw, p.dst, c.decide(p.sock, CallConnect, p.dst))
}

// carryOutConnect answers a connect to dst (raw as the process gave it)
// with the handler's verdict v.
func (s *Supervisor) carryOutConnect(c *call, sock socket, raw []byte, dst netip.AddrPort, v ConnectVerdict) {
	switch v.Action {
	case Fail:
		c.failVerdict(v)
		return
	case Redirect:
	default:
		c.cont()
		return
	}
	sa, err := redirectTarget(sock, v)
	if err != nil {
		s.log.Error("redirect address", "dst", dst, "redirect", v.Redirect, "family", sock.family, "err", err)
		c.fail(unix.ENETUNREACH)
		return
	}
	err = sock.connect(sa)
	if err != nil && err != unix.EINPROGRESS {
		c.failWith(err)
		return
	}
	s.peers.put(sock.inode(), raw)
	if sock.typ == unix.SOCK_DGRAM {
		s.udpFlows.note(sock.inode(), v.Redirect, raw) // recvfrom reports raw as the sender
	}
	if v.Connected != nil {
		v.Connected(sock.localAddr())
	}
	if err != nil {
		c.failWith(err)
		return
	}
	c.ret(0)
}

// getpeername answers with the address the process connected to, for the
// sockets the supervisor redirected (Go fills RemoteAddr from it).
func (s *Supervisor) getpeername(c *call) {
	sock, raw, ok := changedSocket(c, s.peers)
	if !ok {
		return
	}
	sock.close()
	c.answerSockaddr(peerName(raw))
}

// peerName is the kernel's form of a connect address: the full-size sockaddr
// with zeroed padding.
func peerName(raw []byte) []byte {
	size := sizeofSockaddrIn
	if sockaddrFamily(raw) == afInet6 {
		size = sizeofSockaddrIn6
	}
	b := make([]byte, size)
	copy(b, raw)
	if size == sizeofSockaddrIn {
		clear(b[8:])
	}
	return b
}

// maxSend bounds what the supervisor copies out of the process for one send.
const maxSend = 1 << 20

// sendto: sendto(fd, buf, len, flags, addr, addrlen) with an address (BPF
// lets the others through): an unconnected UDP datagram, or TCP Fast Open.
func (s *Supervisor) sendto(c *call) {
	raw, dst, ok := c.readSockaddr(c.arg(4), c.arg(5))
	if !ok {
		c.cont()
		return
	}
	flags := int(int32(c.arg(3)))
	sock, ok := c.openSocket(c.arg(0))
	if !ok {
		c.cont()
		return
	}
	defer sock.close()
	if sock.typ == unix.SOCK_STREAM && flags&unix.MSG_FASTOPEN == 0 {
		c.cont() // the kernel ignores the address of a connected TCP socket
		return
	}
	data := make([]byte, min(c.arg(2), maxSend))
	if c.read(c.arg(1), data) != nil {
		c.cont() // the kernel reports EFAULT itself
		return
	}
	if !c.valid() {
		return
	}
	c.send(sock, raw, dst, data, nil, flags)
}

// send carries out one datagram (or TFO connect) to dst whose sockaddr the
// process gave as raw, and answers the call with the byte count.
func (c *call) send(sock socket, raw []byte, dst netip.AddrPort, data, control []byte, flags int) {
	n, err, handled := c.sendOne(sock, raw, dst, data, control, flags)
	switch {
	case !handled:
		c.cont()
	case err != nil:
		c.failWith(err)
	default:
		c.ret(int64(n))
	}
}

// sendOne decides on and sends one message; handled is false for a
// Passthrough verdict, which the caller may let the kernel carry out.
func (c *call) sendOne(sock socket, raw []byte, dst netip.AddrPort, data, control []byte, flags int) (n int, err error, handled bool) {
	v := c.decide(sock, CallSendTo, dst)
	switch v.Action {
	case Fail:
		if v.Errno == 0 {
			return 0, unix.ECONNREFUSED, true
		}
		return 0, v.Errno, true
	case Redirect:
	default:
		return 0, nil, false
	}
	sa, err := redirectTarget(sock, v)
	if err != nil {
		return 0, unix.ENETUNREACH, true
	}
	n, err = sock.sendmsg(data, control, sa, flags)
	if sock.typ == unix.SOCK_STREAM && (err == nil || err == unix.EINPROGRESS) {
		c.s.peers.put(sock.inode(), raw)
	}
	if sock.typ == unix.SOCK_DGRAM && err == nil {
		c.s.udpFlows.note(sock.inode(), v.Redirect, raw) // recvfrom reports raw as the sender
	}
	if v.Connected != nil && (err == nil || err == unix.EINPROGRESS) {
		v.Connected(sock.localAddr())
	}
	return n, err, true
}

// msghdr is struct msghdr with the target's pointers kept as numbers.
type msghdr struct {
	Name       uint64
	Namelen    uint32
	_          uint32
	Iov        uint64
	Iovlen     uint64
	Control    uint64
	Controllen uint64
	Flags      int32
	_          uint32
}

const sizeofMsghdr = 56

func (m *msghdr) decode(b []byte) {
	le := binary.LittleEndian
	*m = msghdr{Name: le.Uint64(b), Namelen: le.Uint32(b[8:]), Iov: le.Uint64(b[16:]), Iovlen: le.Uint64(b[24:]),
		Control: le.Uint64(b[32:]), Controllen: le.Uint64(b[40:]), Flags: int32(le.Uint32(b[48:]))}
}

// readMsghdr reads the struct msghdr at addr.
func (c *call) readMsghdr(addr uint64) (m msghdr, err error) {
	var b [sizeofMsghdr]byte
	if err = c.read(addr, b[:]); err == nil {
		m.decode(b[:])
	}
	return m, err
}

// sendmsgHasAddress is the receive loop's quick test: sendmsg without a
// destination (connected sockets, AF_UNIX) continues at once.
func (c *call) sendmsgHasAddress() bool {
	m, err := c.readMsghdr(c.arg(1))
	return err == nil && m.Name != 0 && m.Namelen != 0
}

// gather copies a message's payload and control data out of the process.
func (c *call) gather(m msghdr) (data, control []byte, err error) {
	if m.Iovlen > maxIov {
		return nil, nil, unix.EMSGSIZE
	}
	iovs := make([]byte, 16*m.Iovlen)
	if err := c.read(m.Iov, iovs); err != nil {
		return nil, nil, err
	}
	for i := range int(m.Iovlen) {
		base, size := binary.LittleEndian.Uint64(iovs[16*i:]), binary.LittleEndian.Uint64(iovs[16*i+8:])
		size = min(size, uint64(maxSend-len(data)))
		chunk := make([]byte, size)
		if err := c.read(base, chunk); err != nil {
			return nil, nil, err
		}
		data = append(data, chunk...)
	}
	if m.Controllen > 0 && m.Control != 0 {
		control = make([]byte, min(m.Controllen, 1<<16))
		if err := c.read(m.Control, control); err != nil {
			return nil, nil, err
		}
	}
	return data, control, nil
}

// sendmsg: sendmsg(fd, msg, flags) with msg_name set (checked on the receive
// loop). Trapped only with the UDP option.
func (s *Supervisor) sendmsg(c *call) {
	m, err := c.readMsghdr(c.arg(1))
	if err != nil {
		c.cont()
		return
	}
	raw, dst, ok := c.readSockaddr(m.Name, uint64(m.Namelen))
	if !ok {
		c.cont()
		return
	}
	sock, ok := c.openSocket(c.arg(0))
	if !ok {
		c.cont()
		return
	}
	defer sock.close()
	flags := int(int32(c.arg(2)))
	if sock.typ == unix.SOCK_STREAM && flags&unix.MSG_FASTOPEN == 0 {
		c.cont()
		return
	}
	data, control, err := c.gather(m)
	if err != nil || !c.valid() {
		c.cont()
		return
	}
	c.send(sock, raw, dst, data, control, flags)
}

const sizeofMmsghdr = 64 // struct mmsghdr: msghdr + msg_len + padding

// maxIov is UIO_MAXIOV, the kernel's bound on a message's iovecs and on
// the messages of sendmmsg and recvmmsg.
const maxIov = 1024

// sendmmsg: sendmmsg(fd, msgvec, vlen, flags), which libuv (node) uses for
// UDP. If no message has an address the call continues; otherwise the
// supervisor sends every message itself, in order, and stores each msg_len.
func (s *Supervisor) sendmmsg(c *call) {
	vlen := min(c.arg(2), maxIov) // as the kernel caps it
	if vlen == 0 {
		c.cont()
		return
	}
	vec := make([]byte, sizeofMmsghdr*vlen)
	if c.read(c.arg(1), vec) != nil {
		c.cont()
		return
	}
	msgs := make([]msghdr, vlen)
	any := false
	for i := range msgs {
		msgs[i].decode(vec[sizeofMmsghdr*i:])
		any = any || (msgs[i].Name != 0 && msgs[i].Namelen != 0)
	}
	if !any {
		c.cont()
		return
	}
	sock, ok := c.openSocket(c.arg(0))
	if !ok || sock.typ != unix.SOCK_DGRAM {
		if ok {
			sock.close()
		}
		c.cont()
		return
	}
	defer sock.close()
	flags := int(int32(c.arg(3)))
	sent := 0
	var firstErr error
	for i, m := range msgs {
		data, control, err := c.gather(m)
		if err != nil {
			firstErr = unix.EFAULT
			break
		}
		if i == 0 && !c.valid() {
			return
		}
		var n int
		raw, dst, hasDst := c.readSockaddr(m.Name, uint64(m.Namelen))
		handled := false
		if hasDst {
			n, err, handled = c.sendOne(sock, raw, dst, data, control, flags)
		}
		if !handled {
			// No address, or one the session passes through: send it as given.
			n, err = sock.sendmsg(data, control, raw, flags)
		}
		if err != nil {
			firstErr = err
			break
		}
		var lb [4]byte
		binary.LittleEndian.PutUint32(lb[:], uint32(n))
		if c.write(c.arg(1)+uint64(sizeofMmsghdr*i)+sizeofMsghdr, lb[:]) != nil {
			firstErr = unix.EFAULT
			break
		}
		sent++
	}
	if sent == 0 && firstErr != nil {
		c.failWith(firstErr)
		return
	}
	c.ret(int64(sent))
}
