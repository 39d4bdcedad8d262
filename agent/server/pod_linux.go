//go:build linux

package server

import (
	"context"
	"io"
	"net"
	"path"
	"unicode/utf8"

	"github.com/doppel-dev/doppel/agent/dns"
	"github.com/doppel-dev/doppel/agent/files"
	"github.com/doppel-dev/doppel/agent/freeze"
	"github.com/doppel-dev/doppel/agent/incoming"
	"github.com/doppel-dev/doppel/agent/outgoing"
	"github.com/doppel-dev/doppel/agent/target"
	"github.com/doppel-dev/doppel/protocol"
	"golang.org/x/sys/unix"
)

// maxResolvConf bounds what is read of the pod's resolv.conf.
const maxResolvConf = 64 << 10

// Pod answers a helper's requests inside a target's pod: it is the
// agent's protocol.Handler.
type Pod struct {
	target   *target.Target
	files    *files.Root
	dialer   *outgoing.Dialer
	resolver *dns.Resolver
	incoming *incoming.Manager
	freezer  *freeze.Manager // see freeze_linux.go
}

var (
	_ protocol.Handler         = (*Pod)(nil)
	_ protocol.IncomingHandler = (*Pod)(nil)
)

// NewPod serves t, which stays owned by the caller, and its incoming
// traffic through in (nil: none).
func NewPod(t *target.Target, in *incoming.Manager) *Pod {
	p := &Pod{
		target:   t,
		incoming: in,
		files:    files.NewRoot(t.RootFD()),
		dialer:   &outgoing.Dialer{Socket: t.Socket},
	}
	p.resolver = &dns.Resolver{
		ResolvConf: func() ([]byte, error) { return p.files.ReadFile("/etc/resolv.conf", maxResolvConf) },
		Dial:       p.dialer.Dial,
	}
	return p
}

func (p *Pod) Subscribe(ctx context.Context, s *protocol.SessionInfo, args protocol.SubscribeArgs) (protocol.SubscribeResult, error) {
	if p.incoming == nil {
		return protocol.SubscribeResult{}, &protocol.RemoteError{Code: protocol.CodeUnknownOp, Errno: unix.ENOSYS, Message: "this agent serves no incoming traffic"}
	}
	return p.incoming.Subscribe(ctx, s, args)
}

func (p *Pod) Unsubscribe(ctx context.Context, s *protocol.SessionInfo, port uint16) error {
	if p.incoming == nil {
		return nil
	}
	return p.incoming.Unsubscribe(ctx, s, port)
}

func (p *Pod) Pause(ctx context.Context, s *protocol.SessionInfo, paused bool) error {
	if p.incoming == nil {
		return nil
	}
	return p.incoming.Pause(ctx, s, paused)
}

func (p *Pod) SessionGone(id string) {
	p.freezeGone(id)
	if p.incoming != nil {
		p.incoming.SessionGone(id)
	}
}

func (p *Pod) Env(context.Context) ([]string, error)    { return p.target.Env() }
func (p *Pod) Hostname(context.Context) (string, error) { return p.target.Hostname() }

func (p *Pod) DNS(ctx context.Context, query []byte) ([]byte, error) {
	return p.resolver.Exchange(ctx, query)
}

func (p *Pod) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	return p.dialer.Dial(ctx, network, address)
}

func (p *Pod) Stat(_ context.Context, name string) (protocol.FileInfo, error) {
	st, err := p.files.Stat(name)
	return fileInfo(name, &st), err
}

func (p *Pod) Lstat(_ context.Context, name string) (protocol.FileInfo, error) {
	st, err := p.files.Lstat(name)
	return fileInfo(name, &st), err
}

func (p *Pod) Readlink(_ context.Context, name string) (string, error) {
	return p.files.Readlink(name)
}

// ReadDir leaves out names that are not valid UTF-8: JSON would carry them
// altered, and an altered name cannot be opened (a documented limit).
func (p *Pod) ReadDir(_ context.Context, name string) ([]protocol.DirEntry, error) {
	entries, err := p.files.ReadDir(name)
	if err != nil {
		return nil, err
	}
	out := make([]protocol.DirEntry, 0, len(entries))
	for _, e := range entries {
		if utf8.ValidString(e.Name) {
			out = append(out, protocol.DirEntry{Name: e.Name, Type: e.Type, Ino: e.Ino})
		}
	}
	return out, nil
}

func (p *Pod) Open(_ context.Context, name string) (io.ReadCloser, protocol.FileInfo, error) {
	f, st, err := p.files.Open(name)
	if err != nil {
		return nil, protocol.FileInfo{}, err
	}
	return f, fileInfo(name, &st), nil
}

func fileInfo(name string, st *unix.Stat_t) protocol.FileInfo {
	return protocol.FileInfo{
		Name:    path.Base(name),
		Mode:    st.Mode,
		Size:    st.Size,
		UID:     st.Uid,
		GID:     st.Gid,
		Nlink:   uint64(st.Nlink),
		Ino:     st.Ino,
		Dev:     st.Dev,
		Rdev:    st.Rdev,
		Blksize: int64(st.Blksize),
		Blocks:  st.Blocks,
		Atime:   st.Atim.Nano(),
		Mtime:   st.Mtim.Nano(),
		Ctime:   st.Ctim.Nano(),
	}
}
