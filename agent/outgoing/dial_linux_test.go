//go:build linux

package outgoing

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/protocol"
	"golang.org/x/sys/unix"
)

// hostDialer creates sockets in the test's own namespace; the tests only
// reach loopback.
func hostDialer() *Dialer {
	return &Dialer{Socket: func(domain, typ, proto int) (int, error) {
		return unix.Socket(domain, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	}}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestDialTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("hi from " + c.RemoteAddr().String()))
		c.Close()
	}()
	conn, err := hostDialer().Dial(ctxFor(t, 5*time.Second), "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, ok := conn.(*net.TCPConn); !ok {
		t.Fatalf("conn is %T", conn)
	}
	if conn.RemoteAddr().String() != l.Addr().String() {
		t.Errorf("RemoteAddr %v", conn.RemoteAddr())
	}
	data, err := io.ReadAll(conn)
	if err != nil || string(data) != "hi from "+conn.LocalAddr().String() {
		t.Errorf("read %q, %v", data, err)
	}
}

func TestDialErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	d := hostDialer()
	tests := []struct {
		name, network, address string
		want                   syscall.Errno
	}{
		{"refused", "tcp", closed, syscall.ECONNREFUSED},
		{"refused tcp4", "tcp4", closed, syscall.ECONNREFUSED},
		{"not an IP", "tcp", "example.com:80", syscall.EINVAL},
		{"no port", "tcp", "127.0.0.1", syscall.EINVAL},
		{"family mismatch", "tcp6", "127.0.0.1:80", syscall.EAFNOSUPPORT},
		{"family mismatch v6", "tcp4", "[::1]:80", syscall.EAFNOSUPPORT},
		{"unknown network", "sctp", "127.0.0.1:80", syscall.EPROTONOSUPPORT},
		{"named zone", "tcp", "[fe80::1%eth0]:80", syscall.EAFNOSUPPORT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Dial(ctxFor(t, 5*time.Second), tt.network, tt.address)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			// The protocol carries exactly this errno to the helper.
			if w := protocol.WireError(err); w.Errno != protocol.ErrnoName(tt.want) {
				t.Fatalf("wire errno %q", w.Errno)
			}
		})
	}
}

// fullListener is a loopback listener that never accepts, with its accept
// queue filled: further SYNs are dropped, so connects hang.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}).String()
	d := hostDialer()
	for range 4 {
		if c, err := d.Dial(ctxFor(t, 200*time.Millisecond), "tcp", addr); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return addr
}

func TestDialTimeout(t *testing.T) {
	addr := fullListener(t)
	start := time.Now()
	_, err := hostDialer().Dial(ctxFor(t, 300*time.Millisecond), "tcp", addr)
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("err = %v, want ETIMEDOUT", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Error("not a net.Error timeout")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v", took)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := hostDialer().Dial(ctx, "tcp", addr); !errors.Is(err, syscall.ECANCELED) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestDialUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		n, from, err := pc.ReadFrom(buf)
		if err == nil {
			pc.WriteTo(buf[:n], from)
		}
	}()
	conn, err := hostDialer().Dial(ctxFor(t, 5*time.Second), "udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, ok := conn.(*net.UDPConn); !ok {
		t.Fatalf("conn is %T", conn)
	}
	conn.Write([]byte("ping"))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 10)
	if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
}
