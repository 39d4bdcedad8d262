//go:build linux

package target

import (
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSocketPoolRefillsAhead(t *testing.T) {
	var made atomic.Int32
	p := newSocketPool(func(domain, n int) ([]int, error) {
		var fds []int
		for range n {
			fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fds, err
			}
			fds = append(fds, fd)
		}
		made.Add(int32(n))
		return fds, nil
	})
	if fd := p.take(unix.AF_INET); fd != -1 {
		t.Fatalf("an empty pool gave fd %d", fd)
	}
	waitFor(t, func() bool { return made.Load() == poolSize })
	var taken []int
	for range poolSize {
		fd := p.take(unix.AF_INET)
		if fd < 0 {
			// The refill started at half may not have landed yet.
			waitFor(t, func() bool { fd = p.take(unix.AF_INET); return fd >= 0 })
		}
		if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
			t.Fatalf("pooled fd %d: SO_TYPE %d, %v", fd, typ, err)
		}
		taken = append(taken, fd)
	}
	// Taking past half started a refill: sockets wait ready again.
	waitFor(t, func() bool { return made.Load() > poolSize })
	closeAll(taken)
	p.close()
	p.mu.Lock()
	left := len(p.ready[unix.AF_INET])
	p.mu.Unlock()
	if left != 0 {
		t.Errorf("%d sockets left open in a closed pool", left)
	}
	if fd := p.take(unix.AF_INET); fd != -1 {
		t.Errorf("a closed pool gave fd %d", fd)
	}
}

func TestPooledKinds(t *testing.T) {
	for _, c := range []struct {
		domain, typ, proto int
		want               bool
	}{
		{unix.AF_INET, unix.SOCK_STREAM, 0, true},
		{unix.AF_INET6, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, unix.IPPROTO_TCP, true},
		{unix.AF_INET, unix.SOCK_DGRAM, 0, false},
		{unix.AF_PACKET, unix.SOCK_DGRAM, 3, false},
		{unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP, false},
	} {
		if got := pooled(c.domain, c.typ, c.proto); got != c.want {
			t.Errorf("pooled(%d, %d, %d) = %v, want %v", c.domain, c.typ, c.proto, got, c.want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}
