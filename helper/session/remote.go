package session

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/doppel-dev/doppel/protocol"
)

// Remote is what the session needs from its agent connection;
// *protocol.Client is the real one.
type Remote interface {
	Env(ctx context.Context) ([]string, error)
	Hostname(ctx context.Context) (string, error)
	DNS(ctx context.Context, query []byte) ([]byte, error)
	DialTCP(ctx context.Context, address string) (net.Conn, error)
	DialUDP(ctx context.Context, address string) (net.Conn, error)
	Open(ctx context.Context, path string) (io.ReadCloser, protocol.FileInfo, error)
	Stat(ctx context.Context, path string) (protocol.FileInfo, error)
	Lstat(ctx context.Context, path string) (protocol.FileInfo, error)
	Readlink(ctx context.Context, path string) (string, error)
	ReadDir(ctx context.Context, path string) ([]protocol.DirEntry, error)
}

var _ Remote = (*protocol.Client)(nil)

// errnoOf returns the errno a remote failure should look like locally.
// Anything that is not a plain errno from the pod (the agent gone, a
// timeout of our own) becomes EIO for files and ENETUNREACH for sockets.
func errnoOf(err error, fallback syscall.Errno) syscall.Errno {
	var re *protocol.RemoteError
	if errors.As(err, &re) && re.Errno != 0 {
		return re.Errno
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return syscall.ETIMEDOUT
	}
	return fallback
}
