package protocol

import (
	"context"
	"io"
	"net"
)

// Handler is what the agent does for a session; Server turns requests and
// streams into calls of it. Errors should carry an errno (see WireError) so
// the helper can give the local process the errno the pod would have seen.
// Methods are called concurrently.
type Handler interface {
	// Env returns the target process's environment, in order.
	Env(ctx context.Context) ([]string, error)
	// Hostname returns the pod's hostname.
	Hostname(ctx context.Context) (string, error)
	// DNS sends a raw DNS query to the pod's resolver and returns the raw
	// answer.
	DNS(ctx context.Context, query []byte) ([]byte, error)
	// Stat, Lstat, ReadDir, Readlink and Open take absolute paths in the
	// target's root. ReadDir returns every entry, sorted by name.
	Stat(ctx context.Context, path string) (FileInfo, error)
	Lstat(ctx context.Context, path string) (FileInfo, error)
	ReadDir(ctx context.Context, path string) ([]DirEntry, error)
	Readlink(ctx context.Context, path string) (string, error)
	Open(ctx context.Context, path string) (io.ReadCloser, FileInfo, error)
	// Dial connects from the pod's network namespace. network is one of
	// tcp, tcp4, tcp6, udp, udp4, udp6; a TCP connection should implement
	// CloseWrite so half-closes propagate.
	Dial(ctx context.Context, network, address string) (net.Conn, error)
}
