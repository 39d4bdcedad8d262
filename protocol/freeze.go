package protocol

import (
	"context"
	"syscall"
)

// Freezing the target (SPEC.md §11): a session asks the agent to freeze
// the target container's processes (the cgroup freezer) for as long as it
// lives. The agent counts the sessions that asked: the target is thawed
// when the last of them unfreezes or ends, when the agent stops, and — by
// the agent's guardian process — when the agent dies.
const (
	OpFreeze   = "freeze"
	OpUnfreeze = "unfreeze"
)

// FreezeResult is the answer to freeze and unfreeze.
type FreezeResult struct {
	// Frozen says whether the target is frozen now.
	Frozen bool `json:"frozen"`
	// Holders is how many sessions hold the freeze, this one included.
	Holders int `json:"holders"`
	// SinceMS is when the target was frozen (Unix milliseconds), 0 when
	// it is not.
	SinceMS int64 `json:"since_ms,omitempty"`
	// Cgroup is the frozen cgroup's directory as the agent sees it.
	Cgroup string `json:"cgroup,omitempty"`
}

// FreezeHandler is implemented by a Handler that can freeze the target.
// A freeze is session state: it survives transport drops and ends with
// the session (the handler's SessionGone, see IncomingHandler).
type FreezeHandler interface {
	Freeze(ctx context.Context, s *SessionInfo) (FreezeResult, error)
	Unfreeze(ctx context.Context, s *SessionInfo) (FreezeResult, error)
}

// dispatchFreeze runs freeze and unfreeze.
func (c *serverConn) dispatchFreeze(ctx context.Context, req *Request) (any, error) {
	fh, ok := c.srv.Handler.(FreezeHandler)
	if !ok {
		return nil, &RemoteError{Code: CodeUnknownOp, Errno: syscall.ENOSYS, Message: "this agent cannot freeze the target"}
	}
	si := c.srv.sessionInfo(c.sess)
	if req.Op == OpFreeze {
		return fh.Freeze(ctx, si)
	}
	return fh.Unfreeze(ctx, si)
}

// Freeze asks the agent to freeze the target for this session's life.
func (c *Client) Freeze(ctx context.Context) (FreezeResult, error) {
	var res FreezeResult
	err := c.call(ctx, OpFreeze, Empty{}, &res)
	return res, err
}

// Unfreeze gives up this session's hold on the freeze; the target is
// thawed when no session holds it.
func (c *Client) Unfreeze(ctx context.Context) (FreezeResult, error) {
	var res FreezeResult
	err := c.call(ctx, OpUnfreeze, Empty{}, &res)
	return res, err
}
