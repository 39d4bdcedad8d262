//go:build linux

package server

import (
	"context"

	"github.com/doppel-dev/doppel/agent/freeze"
	"github.com/doppel-dev/doppel/protocol"
	"golang.org/x/sys/unix"
)

var _ protocol.FreezeHandler = (*Pod)(nil)

// SetFreezer lets sessions freeze the target through m (nil: they can't).
// Call it before serving.
func (p *Pod) SetFreezer(m *freeze.Manager) { p.freezer = m }

func (p *Pod) Freeze(ctx context.Context, s *protocol.SessionInfo) (protocol.FreezeResult, error) {
	if p.freezer == nil {
		return protocol.FreezeResult{}, &protocol.RemoteError{Code: protocol.CodeUnknownOp, Errno: unix.ENOSYS, Message: "this agent cannot freeze its target"}
	}
	st, err := p.freezer.Hold(ctx, s.ID)
	if err != nil {
		return protocol.FreezeResult{}, &protocol.RemoteError{Errno: unix.EIO, Message: err.Error()}
	}
	return freezeResult(st), nil
}

func (p *Pod) Unfreeze(_ context.Context, s *protocol.SessionInfo) (protocol.FreezeResult, error) {
	if p.freezer == nil {
		return protocol.FreezeResult{}, nil
	}
	st, err := p.freezer.Release(s.ID)
	if err != nil {
		return freezeResult(st), &protocol.RemoteError{Errno: unix.EIO, Message: err.Error()}
	}
	return freezeResult(st), nil
}

// freezeGone releases a session's freeze when the session ends (closed,
// or lost after its resume grace).
func (p *Pod) freezeGone(id string) {
	if p.freezer != nil {
		p.freezer.Release(id)
	}
}

func freezeResult(st freeze.Status) protocol.FreezeResult {
	r := protocol.FreezeResult{Frozen: st.Frozen, Holders: st.Holders, Cgroup: st.Cgroup}
	if st.Frozen {
		r.SinceMS = st.Since.UnixMilli()
	}
	return r
}
