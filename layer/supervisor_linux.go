package layer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

// Supervisor answers the notifications of any number of seccomp listeners
// (one per launched or preloaded process tree) for one Handler.
type Supervisor struct {
	h     Handler
	opts  Options
	log   *slog.Logger
	procs *processTable

	ctx    context.Context
	cancel context.CancelFunc
	loops  sync.WaitGroup

	mu        sync.Mutex
	listeners map[*seccomp.Listener]bool
	closed    bool

	peers    *socketTable[[]byte]   // redirected socket -> sockaddr the process connected to
	udpFlows *udpFlowTable          // unconnected UDP socket -> the relays it sent to
	bound    *socketTable[uint16]   // rebound socket -> port the process asked for
	anyPort  *socketTable[struct{}] // sockets bound to port 0: the kernel chose

	notifications, continued, answered atomic.Uint64
}

// NewSupervisor returns a supervisor for h. Close it when the session ends.
func NewSupervisor(h Handler, opts Options) *Supervisor {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Supervisor{
		h: h, opts: opts, log: log,
		procs:     newProcessTable(h.Skip),
		ctx:       ctx,
		cancel:    cancel,
		listeners: map[*seccomp.Listener]bool{},
		peers:     newSocketTable[[]byte](1 << 16),
		udpFlows:  newUDPFlowTable(),
		bound:     newSocketTable[uint16](1 << 12),
		anyPort:   newSocketTable[struct{}](1 << 12),
	}
	go s.procs.sweepEvery(2*time.Second, ctx.Done())
	return s
}

// Filter returns the filter options the supervisor was made for.
func (s *Supervisor) Filter() seccomp.Options { return s.opts.Filter }

// Stats returns the notification counters.
func (s *Supervisor) Stats() Stats {
	return Stats{Notifications: s.notifications.Load(), Continued: s.continued.Load(), Answered: s.answered.Load()}
}

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("layer: supervisor closed")

// Serve starts answering the notifications of listener (taking ownership of
// it) on a receive loop of its own and returns. The loop ends when every
// process using the filter has exited, or on Close.
func (s *Supervisor) Serve(listener *os.File) error {
	l, err := seccomp.NewListener(listener)
	if err != nil {
		listener.Close()
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		l.Close()
		return ErrClosed
	}
	s.listeners[l] = true
	s.loops.Add(1)
	go s.receive(l)
	return nil
}

// Close stops every receive loop and waits for calls in progress. Processes
// still running under a filter get ENOSYS for trapped calls from then on, so
// end the process trees first.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Stop()
	}
	s.mu.Unlock()
	s.cancel()
	s.loops.Wait()
	s.procs.close()
	return nil
}

// receive is the hot path: one receive loop per listener (more receivers
// per listener measured 4x slower), no /proc reads but the first per
// process, and anything that may block moved to a goroutine. The loop waits
// in poll(2) on its thread (seccomp.Listener.Wait) but is not locked to it:
// with the hand-off to a goroutine per call, a locked thread measured
// slower (98 vs 77 µs per trapped openat on a loaded 2-core VM), because
// every wake-up then needs that particular thread.
func (s *Supervisor) receive(l *seccomp.Listener) {
	var work sync.WaitGroup // calls answered on their own goroutines
	defer func() {
		work.Wait()
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
		s.loops.Done()
	}()
	var n seccomp.Notif
	for l.Wait() {
		if err := l.Recv(&n); err != nil {
			if err != seccomp.ErrGone {
				s.log.Error("seccomp receive", "err", err)
			}
			continue
		}
		s.notifications.Add(1)
		if s.dispatch(l, &work, n) {
			// The loop's thread holds its P while it waits in poll(2)
			// (seccomp.Listener.Wait): run what was just started until it
			// blocks, instead of leaving it for another thread to steal.
			runtime.Gosched()
		}
	}
}

// call is one notification being answered.
type call struct {
	s    *Supervisor
	l    *seccomp.Listener
	n    seccomp.Notif
	proc *process
	id   Process
}

func (c *call) arg(i int) uint64 { return c.n.Data.Args[i] }
func (c *call) tid() int         { return int(c.n.PID) }

// valid reports whether the caller still waits; check it after reading its
// memory, whose owner could have been replaced by a reused thread id.
func (c *call) valid() bool { return c.l.Valid(c.n.ID) }

func (c *call) cont() {
	c.s.continued.Add(1)
	c.l.Continue(c.n.ID)
}

func (c *call) ret(v int64) {
	c.s.answered.Add(1)
	c.l.Return(c.n.ID, v)
}

func (c *call) fail(errno unix.Errno) {
	c.s.answered.Add(1)
	c.l.Fail(c.n.ID, errno)
}

// failWith answers with err's errno, or EIO for errors without one.
func (c *call) failWith(err error) {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		errno = unix.EIO
	}
	c.fail(errno)
}

func (c *call) read(addr uint64, b []byte) error { return seccomp.ReadMemory(c.tid(), addr, b) }

func (c *call) write(addr uint64, b []byte) error { return seccomp.WriteMemory(c.tid(), addr, b) }

// dispatch answers a call or hands it to a goroutine; started says whether
// goroutines were started for it (by dispatch or by the handler).
func (s *Supervisor) dispatch(l *seccomp.Listener, work *sync.WaitGroup, n seccomp.Notif) (started bool) {
	c := &call{s: s, l: l, n: n}
	nr := int(n.Data.Nr)
	if n.Data.Arch != seccomp.AuditArchX86_64 {
		c.fail(unix.ENOSYS) // the filter already refuses these
		return
	}
	if nr == seccomp.SysExecve || nr == seccomp.SysExecveat {
		s.procs.execing(c.tid())
		c.cont()
		return
	}
	p, err := s.procs.get(c.tid())
	if err != nil {
		// The caller is gone (or /proc is unreadable): let the kernel decide.
		s.log.Debug("unknown caller", "tid", c.tid(), "nr", nr, "err", err)
		c.cont()
		return
	}
	id, skip := s.procs.snapshot(p, c.tid())
	if skip {
		p.release()
		c.cont()
		return
	}
	c.proc, c.id = p, id
	if nr == seccomp.SysSendmsg && !c.sendmsgHasAddress() {
		p.release()
		c.cont()
		return
	}
	if nr == seccomp.SysGetpeername || nr == seccomp.SysGetsockname {
		// Every Go dial asks both after connect: answered here (pidfd_getfd,
		// fstat, a table, a memory write — nothing that blocks), they save
		// a goroutine wake-up each.
		s.handle(c, nr)
		p.release()
		return
	}
	if qc, ok := s.h.(QuickConnects); ok && nr == seccomp.SysConnect {
		if pending := s.quickConnect(c, qc); pending != nil {
			answerAsync(work, p, func() { s.finishConnect(c, pending) })
		} else {
			p.release()
		}
		return true // an early connect's dial runs on goroutines of the handler
	}
	if nr == seccomp.SysRecvfrom || nr == seccomp.SysRecvmsg || nr == seccomp.SysRecvmmsg {
		// Answered here unless the caller waits for a datagram.
		if pending := s.recv(c, nr); pending != nil {
			answerAsync(work, p, func() { s.recvWait(c, nr, pending) })
			return true
		}
		p.release()
		return
	}
	fa, isFile, ok := c.fileArgs(nr)
	if isFile && (!ok || s.quickFile(c, fa)) {
		if !ok {
			c.cont()
		}
		p.release()
		return
	}
	answerAsync(work, p, func() {
		if isFile {
			s.file(c, fa)
			return
		}
		s.handle(c, nr)
	})
	return true
}

// answerAsync answers a call on a goroutine of its own: anything that may
// block. The receive loop's Close waits for work.
func answerAsync(work *sync.WaitGroup, p *process, answer func()) {
	work.Add(1)
	go func() {
		defer work.Done()
		defer p.release()
		answer()
	}()
}

func (s *Supervisor) handle(c *call, nr int) {
	switch nr {
	case seccomp.SysConnect:
		s.connect(c)
	case seccomp.SysGetpeername:
		s.getpeername(c)
	case seccomp.SysSendto:
		s.sendto(c)
	case seccomp.SysSendmsg:
		s.sendmsg(c)
	case seccomp.SysSendmmsg:
		s.sendmmsg(c)
	case seccomp.SysBind:
		s.bind(c)
	case seccomp.SysListen:
		s.listen(c)
	case seccomp.SysGetsockname:
		s.getsockname(c)
	case seccomp.SysUname:
		s.uname(c)
	default:
		c.cont()
	}
}

// uname answers uname(2) with this machine's utsname and the handler's
// host name as the node name.
func (s *Supervisor) uname(c *call) {
	hp, ok := s.h.(HostnameProvider)
	name := ""
	if ok {
		name = hp.Hostname()
	}
	if name == "" {
		c.cont()
		return
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		c.cont()
		return
	}
	clear(u.Nodename[:])
	copy(u.Nodename[:len(u.Nodename)-1], name)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&u)), unsafe.Sizeof(u))
	if !c.valid() {
		return // the hostname may have taken a while: the tid may be another thread's by now
	}
	if err := c.write(c.arg(0), b); err != nil {
		c.fail(unix.EFAULT)
		return
	}
	c.ret(0)
}
