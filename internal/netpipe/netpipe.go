// Package netpipe joins two connections: the byte relay every hop of doppel
// makes (local process and tunnel, agent stream and pod socket, stolen
// connection and original server).
package netpipe

import (
	"errors"
	"io"
	"net"
	"sync"
)

// bufferSize is the chunk Copy moves at once between other than two TCP
// sockets: larger than io.Copy's 32 KiB, so that a bulk transfer makes
// fewer, larger yamux frames and syscalls on every hop of the port-forward.
const bufferSize = 256 << 10

var buffers = sync.Pool{New: func() any { b := make([]byte, bufferSize); return &b }}

// Buffer lends a copy buffer of the size Copy uses; give it back with
// PutBuffer.
func Buffer() *[]byte { return buffers.Get().(*[]byte) }

// PutBuffer gives back a buffer from Buffer.
func PutBuffer(b *[]byte) { buffers.Put(b) }

// Copy copies src to dst until EOF: in the kernel (splice) between two TCP
// sockets, else through a pooled bufferSize buffer. (A TCP socket's
// ReadFrom or WriteTo with a stream on the other side could only fall back
// to io.Copy's 32 KiB buffer, so they are hidden.)
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	if _, ok := dst.(*net.TCPConn); ok {
		if _, ok := src.(*net.TCPConn); ok {
			return io.Copy(dst, src)
		}
	}
	b := buffers.Get().(*[]byte)
	defer buffers.Put(b)
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *b)
}

// IsTimeout reports a deadline that passed on a connection (or an accept).
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// CloseWrite half-closes c where it can (TCP sockets, and wrappers that
// pass it on), else closes it; a yamux stream's Close is its half-close.
func CloseWrite(c io.Closer) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// Reset closes c; a TCP socket with a reset, so that its peer reads an
// error rather than an EOF that would pass for the end of what was sent.
func Reset(c io.Closer) error {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	return c.Close()
}

// Join copies both ways between a and b until both directions have ended,
// passing each EOF on as a half-close, then closes both. A copy that fails
// resets both at once: nothing more could pass, the other direction must
// not wait for a peer that will never close, and neither peer may take
// what it got for the whole.
func Join(a, b io.ReadWriteCloser) {
	var once sync.Once
	abort := func() { once.Do(func() { Reset(a); Reset(b) }) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := Copy(b, a); err != nil {
			abort()
			return
		}
		CloseWrite(b)
	}()
	if _, err := Copy(a, b); err != nil {
		abort()
	} else {
		CloseWrite(a)
	}
	<-done
	a.Close()
	b.Close()
}
