package session

import (
	"bytes"
	"context"
	"io"
	"net"
	"path"
	"sort"
	"strings"
	"syscall"

	"github.com/doppel-dev/doppel/protocol"
)

// fakeRemote is a pod made of a map of files, for unit tests of the logic
// above the protocol. The real agent is exercised by the integration suites.
type fakeRemote struct {
	files map[string]string // path -> content; a trailing "/" in the key marks a directory
	env   []string
	host  string
}

func (r *fakeRemote) Env(context.Context) ([]string, error)       { return r.env, nil }
func (r *fakeRemote) Hostname(context.Context) (string, error)    { return r.host, nil }
func (r *fakeRemote) DNS(context.Context, []byte) ([]byte, error) { return nil, syscall.ENOSYS }
func (r *fakeRemote) DialTCP(context.Context, string) (net.Conn, error) {
	return nil, &protocol.RemoteError{Op: "dial", Errno: syscall.ECONNREFUSED}
}
func (r *fakeRemote) DialUDP(context.Context, string) (net.Conn, error) {
	return nil, &protocol.RemoteError{Op: "dial", Errno: syscall.ENETUNREACH}
}

func (r *fakeRemote) info(p string) (protocol.FileInfo, error) {
	if c, ok := r.files[p]; ok {
		return protocol.FileInfo{Name: path.Base(p), Mode: 0o100644, Size: int64(len(c))}, nil
	}
	if _, ok := r.files[p+"/"]; ok {
		return protocol.FileInfo{Name: path.Base(p), Mode: protocol.ModeDir | 0o755}, nil
	}
	return protocol.FileInfo{}, &protocol.RemoteError{Op: "stat", Errno: syscall.ENOENT}
}

func (r *fakeRemote) Stat(_ context.Context, p string) (protocol.FileInfo, error)  { return r.info(p) }
func (r *fakeRemote) Lstat(_ context.Context, p string) (protocol.FileInfo, error) { return r.info(p) }
func (r *fakeRemote) Readlink(context.Context, string) (string, error) {
	return "", &protocol.RemoteError{Op: "readlink", Errno: syscall.EINVAL}
}

func (r *fakeRemote) Open(_ context.Context, p string) (io.ReadCloser, protocol.FileInfo, error) {
	info, err := r.info(p)
	if err != nil {
		return nil, info, err
	}
	return io.NopCloser(bytes.NewReader([]byte(r.files[p]))), info, nil
}

func (r *fakeRemote) ReadDir(_ context.Context, p string) ([]protocol.DirEntry, error) {
	if _, ok := r.files[p+"/"]; !ok {
		return nil, &protocol.RemoteError{Op: "readdir", Errno: syscall.ENOTDIR}
	}
	var out []protocol.DirEntry
	for k := range r.files {
		rest, ok := strings.CutPrefix(k, p+"/")
		if !ok || rest == "" || strings.Contains(strings.TrimSuffix(rest, "/"), "/") {
			continue
		}
		e := protocol.DirEntry{Name: strings.TrimSuffix(rest, "/"), Type: 0o100000}
		if strings.HasSuffix(rest, "/") {
			e.Type = protocol.ModeDir
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
