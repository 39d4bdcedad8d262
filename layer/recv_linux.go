package layer

import (
	"encoding/binary"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

// A datagram the supervisor redirected to a session's relay is answered by
// the relay, from a loopback address. A program that asks recvfrom for the
// sender (Python, Java and Go's ReadFrom, dnspython checking its name
// server) must see the address it sent to: for the UDP sockets that sent
// through a relay, the supervisor receives in the process's stead and puts
// that address in the relay's place.

// udpFlow is one relay an unconnected UDP socket sent to, and the address
// the process gave (raw, as it gave it).
type udpFlow struct {
	relay netip.AddrPort
	raw   []byte
}

// maxFlowsPerSocket bounds what is remembered for one socket (a scanner
// sending to many addresses): the oldest flows are forgotten first.
const maxFlowsPerSocket = 256

// maxRecv bounds the datagram the supervisor receives for the process.
const maxRecv = 1 << 16

// udpFlowTable is socket inode -> the relays it sent to.
type udpFlowTable struct {
	mu sync.Mutex // read-modify-write of one socket's flows
	t  *socketTable[[]udpFlow]
}

func newUDPFlowTable() *udpFlowTable {
	return &udpFlowTable{t: newSocketTable[[]udpFlow](1 << 12)}
}

// note remembers that the socket ino sent a datagram for raw to relay.
func (f *udpFlowTable) note(ino uint64, relay netip.AddrPort, raw []byte) {
	relay = netip.AddrPortFrom(relay.Addr().Unmap(), relay.Port())
	f.mu.Lock()
	defer f.mu.Unlock()
	old, _ := f.t.get(ino)
	flows := make([]udpFlow, 0, len(old)+1)
	for _, fl := range old {
		if fl.relay != relay {
			flows = append(flows, fl)
		}
	}
	flows = append(flows, udpFlow{relay: relay, raw: append([]byte(nil), raw...)})
	if len(flows) > maxFlowsPerSocket {
		flows = flows[len(flows)-maxFlowsPerSocket:]
	}
	f.t.put(ino, flows)
}

// sender is the address to report for a datagram from src, a relay of
// flows, or nil when src is no relay of this socket.
func sender(flows []udpFlow, src netip.AddrPort) []byte {
	if !src.Addr().Unmap().IsLoopback() {
		return nil
	}
	for _, fl := range flows {
		if fl.relay.Port() == src.Port() {
			return peerName(fl.raw)
		}
	}
	return nil
}

// pendingRecv is a receive that waits for a datagram: the supervisor's copy
// of the socket and the relays it sent to.
type pendingRecv struct {
	sock  socket
	flows []udpFlow
}

// recv answers recvfrom (with a src_addr: the filter lets the others
// through), recvmsg and recvmmsg on the receive loop — continued for any socket that
// sent through no relay — when a datagram is there or the caller does not
// wait. It returns what recvWait needs, on a goroutine, when the caller
// waits for one.
func (s *Supervisor) recv(c *call, nr int) *pendingRecv {
	sock, flows, ok := changedSocket(c, s.udpFlows.t)
	if !ok {
		return nil
	}
	if !c.receive(nr, sock, flows) {
		sock.close()
		return nil
	}
	if c.recvFlags(nr)&unix.MSG_DONTWAIT != 0 || sock.nonBlocking() {
		c.fail(unix.EAGAIN)
		sock.close()
		return nil
	}
	return &pendingRecv{sock: sock, flows: flows}
}

func (c *call) recvFlags(nr int) int {
	if nr == seccomp.SysRecvmsg {
		return int(int32(c.arg(2)))
	}
	return int(int32(c.arg(3))) // recvfrom, recvmmsg
}

func (c *call) receive(nr int, sock socket, flows []udpFlow) (wouldBlock bool) {
	switch nr {
	case seccomp.SysRecvmsg:
		return c.recvMsgInto(sock, flows)
	case seccomp.SysRecvmmsg:
		return c.recvMmsgInto(sock, flows)
	}
	return c.recvInto(sock, flows)
}

// recvWait waits for a datagram for a blocking recvfrom, recvmsg or
// recvmmsg (whose timeout is not waited for beyond the first), within
// the socket's SO_RCVTIMEO. It wakes every pollSlice to notice a caller
// that went away, or a signal for it: a trapped call waits killably, so a
// ^C or an alarm would not interrupt it as it interrupts the kernel's own
// wait; the call is then handed back for the signal (see errRestartSys).
// A socket shut down for reading gives 0, as the kernel's blocking
// receive does.
func (s *Supervisor) recvWait(c *call, nr int, p *pendingRecv) {
	defer p.sock.close()
	sock, flows := p.sock, p.flows
	const pollSlice = 100 * time.Millisecond
	var deadline time.Time
	if tv, err := unix.GetsockoptTimeval(sock.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO); err == nil && (tv.Sec != 0 || tv.Usec != 0) {
		deadline = time.Now().Add(time.Duration(tv.Nano()))
	}
	for {
		if !c.valid() {
			return
		}
		if s.ctx.Err() != nil {
			c.cont() // the supervisor is closing: the kernel waits instead
			return
		}
		wait := pollSlice
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				c.fail(unix.EAGAIN) // what SO_RCVTIMEO's expiry gives
				return
			}
			wait = min(wait, left)
		}
		fds := []unix.PollFd{{Fd: int32(sock.fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		n, _ := unix.Poll(fds, int(wait.Milliseconds())+1)
		if n > 0 && !c.receive(nr, sock, flows) {
			return
		}
		if n > 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP) != 0 {
			c.ret(0) // shutdown(2): nothing more will come
			return
		}
		if signalPending(c.tid()) {
			c.fail(errRestartSys)
			return
		}
	}
}

// errRestartSys is ERESTARTSYS: a call failed with it is restarted after
// the signal's handler when the handler has SA_RESTART, and fails with
// EINTR otherwise — what the kernel does with a wait of its own. With no
// handler to run it is restarted (and trapped again).
const errRestartSys = unix.Errno(512)

// signalPending reports a signal pending for thread tid that it does not
// block (/proc/TID/status: SigPnd, ShdPnd, SigBlk).
func signalPending(tid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return false
	}
	var pending, blocked uint64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "SigPnd", "ShdPnd":
			m, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			pending |= m
		case "SigBlk":
			blocked, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return pending&^blocked != 0
}

// translateSender replaces a relay's address in from by the address the
// process sent to.
func translateSender(from []byte, flows []udpFlow) []byte {
	if ap, ok := decodeSockaddr(from); ok {
		if orig := sender(flows, ap); orig != nil {
			return orig
		}
	}
	return from
}

// recvMsgInto is recvInto for recvmsg.
func (c *call) recvMsgInto(sock socket, flows []udpFlow) (wouldBlock bool) {
	n, e := c.recvOneMsg(sock, flows, c.arg(1), int(int32(c.arg(2))))
	if e == errnoGone {
		return false
	}
	if wouldBlock, failed := c.recvFailed(e); failed {
		return wouldBlock
	}
	c.ret(int64(n))
	return false
}

// recvMmsgInto is recvInto for recvmmsg: the datagrams there now, at
// least one (else wouldBlock), each into the next of the process's
// mmsghdrs with its msg_len; like MSG_WAITFORONE, it does not wait for
// more once one arrived.
func (c *call) recvMmsgInto(sock socket, flows []udpFlow) (wouldBlock bool) {
	vec, vlen := c.arg(1), min(c.arg(2), maxIov)
	flags := int(int32(c.arg(3))) &^ unix.MSG_WAITFORONE
	got := 0
	for i := range vlen {
		hdr := vec + i*sizeofMmsghdr
		n, e := c.recvOneMsg(sock, flows, hdr, flags)
		if e == errnoGone {
			return false
		}
		if e != 0 && got > 0 {
			break // the kernel too returns what arrived, and the error next time
		}
		if wouldBlock, failed := c.recvFailed(e); failed {
			return wouldBlock
		}
		var b4 [4]byte
		binary.LittleEndian.PutUint32(b4[:], uint32(n))
		if err := c.write(hdr+56, b4[:]); err != nil { // msg_len
			c.fail(unix.EFAULT)
			return false
		}
		got++
	}
	c.ret(int64(got))
	return false
}

// errnoGone is recvOneMsg's word for a caller that is gone: nothing is to
// be answered.
const errnoGone = unix.Errno(^uintptr(0) >> 1)

// recvOneMsg receives one datagram without waiting into the process's
// msghdr at hdr: the datagram is scattered over its iovecs, and msg_name,
// msg_namelen, the control data, msg_controllen and msg_flags are written
// back as the kernel would. It returns the datagram's length, or the
// errno to answer (EAGAIN: none there).
func (c *call) recvOneMsg(sock socket, flows []udpFlow, hdr uint64, flags int) (int, unix.Errno) {
	m, err := c.readMsghdr(hdr)
	if err != nil {
		return 0, unix.EFAULT
	}
	if m.Iovlen > maxIov {
		return 0, unix.EMSGSIZE
	}
	iovs := make([]byte, 16*m.Iovlen)
	if err := c.read(m.Iov, iovs); err != nil {
		return 0, unix.EFAULT
	}
	var total uint64
	for i := range int(m.Iovlen) {
		total += binary.LittleEndian.Uint64(iovs[16*i+8:])
	}
	buf := make([]byte, max(min(total, maxRecv), 1))
	var name [maxSockaddr]byte
	control := make([]byte, min(m.Controllen, 1<<16))
	var h unix.Msghdr
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(int(min(total, maxRecv)))
	h.Iov, h.Iovlen = &iov, 1
	if m.Name != 0 {
		h.Name, h.Namelen = &name[0], uint32(len(name))
	}
	if len(control) > 0 {
		h.Control = &control[0]
		h.SetControllen(len(control))
	}
	if !c.valid() {
		return 0, errnoGone
	}
	r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(sock.fd), uintptr(unsafe.Pointer(&h)), uintptr(flags|unix.MSG_DONTWAIT))
	if e != 0 {
		return 0, e
	}
	n := int(r)
	data := buf[:min(n, int(min(total, maxRecv)))]
	for i := 0; i < int(m.Iovlen) && len(data) > 0; i++ {
		base, size := binary.LittleEndian.Uint64(iovs[16*i:]), binary.LittleEndian.Uint64(iovs[16*i+8:])
		chunk := data[:min(uint64(len(data)), size)]
		if err := c.write(base, chunk); err != nil {
			return 0, unix.EFAULT
		}
		data = data[len(chunk):]
	}
	var b8 [8]byte
	if m.Name != 0 {
		from := translateSender(name[:min(int(h.Namelen), len(name))], flows)
		if err := c.write(m.Name, from[:min(len(from), int(m.Namelen))]); err != nil {
			return 0, unix.EFAULT
		}
		binary.LittleEndian.PutUint32(b8[:4], uint32(len(from)))
		c.write(hdr+8, b8[:4]) // msg_namelen
	}
	if m.Control != 0 {
		cl := min(int(h.Controllen), len(control))
		if err := c.write(m.Control, control[:cl]); err != nil {
			return 0, unix.EFAULT
		}
		binary.LittleEndian.PutUint64(b8[:], uint64(cl))
		c.write(hdr+40, b8[:]) // msg_controllen
	}
	binary.LittleEndian.PutUint32(b8[:4], uint32(h.Flags))
	c.write(hdr+48, b8[:4]) // msg_flags
	return n, 0
}

// recvInto receives one datagram without waiting and answers the call with
// it, the sender translated back from a relay; wouldBlock is true (and the
// call unanswered) when there was none.
func (c *call) recvInto(sock socket, flows []udpFlow) (wouldBlock bool) {
	size := min(c.arg(2), maxRecv)
	buf := make([]byte, size)
	var sa [maxSockaddr]byte
	salen := uint32(len(sa))
	if !c.valid() {
		return false
	}
	var bufp unsafe.Pointer
	if size > 0 {
		bufp = unsafe.Pointer(&buf[0])
	}
	flags := int(int32(c.arg(3))) | unix.MSG_DONTWAIT
	r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(sock.fd), uintptr(bufp), uintptr(size), uintptr(flags),
		uintptr(unsafe.Pointer(&sa[0])), uintptr(unsafe.Pointer(&salen)))
	if wouldBlock, failed := c.recvFailed(e); failed {
		return wouldBlock
	}
	n := int(r)
	from := translateSender(sa[:min(int(salen), len(sa))], flows)
	if err := c.write(c.arg(1), buf[:min(n, int(size))]); err != nil {
		c.fail(unix.EFAULT)
		return false
	}
	switch err := c.writeSockaddr(c.arg(4), c.arg(5), from); err {
	case nil:
		c.ret(int64(n))
	case errGone:
	default:
		c.fail(unix.EFAULT)
	}
	return false
}

// recvFailed sorts a non-blocking receive's errno: EAGAIN leaves the call
// unanswered (wouldBlock), any other error answers it.
func (c *call) recvFailed(e unix.Errno) (wouldBlock, failed bool) {
	switch {
	case e == unix.EAGAIN:
		return true, true
	case e != 0:
		c.fail(e)
		return false, true
	}
	return false, false
}
