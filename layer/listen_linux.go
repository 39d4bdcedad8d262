package layer

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// bind: bind(fd, addr, addrlen) on an IP socket, carried out by the
// supervisor so that every bound port is known and the supervisor's own
// privileges count for low ports. A port taken locally (EADDRINUSE), or one the
// supervisor may not bind (EACCES), is replaced by an ephemeral one, and the
// process keeps seeing the port it asked for through getsockname: in the pod
// the port would have been free.
func (s *Supervisor) bind(c *call) {
	raw, requested, ok := c.readSockaddr(c.arg(1), c.arg(2))
	if !ok || !c.valid() {
		c.cont()
		return
	}
	sock, ok := c.openSocket(c.arg(0))
	if !ok {
		c.cont()
		return
	}
	defer sock.close()
	var local uint16
	if lp, ok := s.h.(ListenPorts); ok && requested.Port() != 0 {
		local = lp.LocalListenPort(c.id, requested.Port())
	}
	if requested.Port() == 0 {
		s.anyPort.put(sock.inode(), struct{}{})
	}
	var err error
	rebound := false
	switch {
	case local != 0 && local != requested.Port():
		// Where the user asked to listen locally; taken is an error.
		if err = sock.bind(withPort(raw, local)); err == nil {
			rebound = true
			s.bound.put(sock.inode(), requested.Port())
		}
	default:
		err = sock.bind(raw)
		if err == unix.EADDRNOTAVAIL && !requested.Addr().IsLoopback() && !requested.Addr().IsUnspecified() {
			// The pod's own address (gethostbyname(gethostname()) finds it
			// in the pod's /etc/hosts) is no address of this machine.
			// Loopback stands in: the session's incoming traffic arrives
			// there, and nothing opens to the machine's own networks.
			lo := netip.IPv6Loopback()
			if requested.Addr().Unmap().Is4() {
				lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			}
			if la, lerr := encodeSockaddr(sock.family, netip.AddrPortFrom(lo, requested.Port()), sock.v6only()); lerr == nil {
				raw = la
				err = sock.bind(raw)
			}
		}
		if (err == unix.EADDRINUSE || err == unix.EACCES) && requested.Port() != 0 {
			if err = sock.bind(withPort(raw, 0)); err == nil {
				rebound = true
				s.bound.put(sock.inode(), requested.Port())
			}
		}
	}
	if err != nil {
		c.failWith(err)
		return
	}
	if sock.typ == unix.SOCK_DGRAM {
		actual := sock.localAddr()
		s.h.Listening(c.id, UDP, netip.AddrPortFrom(actual.Addr(), requested.Port()), actual)
	}
	if rebound {
		s.log.Debug("port taken locally: rebound", "requested", requested, "pid", c.id.PID)
	}
	c.ret(0)
}

// listen: listen(fd, backlog) on a TCP socket, carried out by the supervisor
// so that the listening address (auto-bound ports too) reaches the Handler
// before the process can accept. A port the kernel chose is reported as
// requested port 0: nobody in the pod could know it.
func (s *Supervisor) listen(c *call) {
	sock, ok := c.openSocket(c.arg(0))
	if !ok {
		c.cont()
		return
	}
	defer sock.close()
	if sock.typ != unix.SOCK_STREAM {
		c.cont()
		return
	}
	// listen(2) on an unbound socket binds a port of the kernel's choice.
	autoBound := sock.localAddr().Port() == 0
	if err := unix.Listen(sock.fd, int(int32(c.arg(1)))); err != nil {
		c.failWith(err)
		return
	}
	actual := sock.localAddr()
	requested := actual
	if port, ok := s.bound.get(sock.inode()); ok {
		requested = netip.AddrPortFrom(actual.Addr(), port)
	} else if _, any := s.anyPort.get(sock.inode()); any || autoBound {
		requested = netip.AddrPortFrom(actual.Addr(), 0)
	}
	s.h.Listening(c.id, TCP, requested, actual)
	c.ret(0)
}

// getsockname answers with the requested port for rebound sockets.
func (s *Supervisor) getsockname(c *call) {
	sock, port, ok := changedSocket(c, s.bound)
	if !ok {
		return
	}
	defer sock.close()
	name, err := sock.name()
	if err != nil {
		c.cont()
		return
	}
	c.answerSockaddr(withPort(name, port))
}
