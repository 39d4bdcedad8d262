//go:build linux

package target

import (
	"sync"

	"golang.org/x/sys/unix"
)

// socketPool keeps a few TCP sockets made in the target's network
// namespace ready. A socket can only be made on the namespace thread, and
// handing a call to that locked OS thread and back costs 60–200 µs on an
// idle node and milliseconds on a busy one: on every new connection's
// path, before its handshake. Unconnected sockets are invisible to the
// pod, so having some ready changes nothing it can see.
type socketPool struct {
	make func(domain int, n int) ([]int, error) // n new sockets, on the namespace thread

	mu        sync.Mutex
	ready     map[int][]int // by family
	refilling map[int]bool
	closed    bool
}

// poolSize is how many sockets of a family wait ready: enough for a burst
// of connections while one refill runs.
const poolSize = 8

func newSocketPool(make func(domain int, n int) ([]int, error)) *socketPool {
	return &socketPool{make: make, ready: map[int][]int{}, refilling: map[int]bool{}}
}

// pooled reports whether sockets of this kind come from the pool.
func pooled(domain, typ, proto int) bool {
	return (domain == unix.AF_INET || domain == unix.AF_INET6) &&
		typ&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) == unix.SOCK_STREAM && (proto == 0 || proto == unix.IPPROTO_TCP)
}

// take returns a ready socket of the family, or -1, and starts a refill
// when the pool runs low.
func (p *socketPool) take(domain int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	fd := -1
	if fds := p.ready[domain]; len(fds) > 0 {
		fd, p.ready[domain] = fds[len(fds)-1], fds[:len(fds)-1]
	}
	if len(p.ready[domain]) < poolSize/2 && !p.refilling[domain] && !p.closed {
		p.refilling[domain] = true
		go p.refill(domain)
	}
	return fd
}

func (p *socketPool) refill(domain int) {
	p.mu.Lock()
	n := poolSize - len(p.ready[domain])
	p.mu.Unlock()
	fds, _ := p.make(domain, n) // a failure shows when a dial makes its own
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refilling[domain] = false
	if p.closed {
		closeAll(fds)
		return
	}
	p.ready[domain] = append(p.ready[domain], fds...)
}

func (p *socketPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for d, fds := range p.ready {
		closeAll(fds)
		delete(p.ready, d)
	}
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
