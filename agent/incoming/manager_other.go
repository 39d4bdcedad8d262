//go:build !linux

package incoming

import (
	"context"
	"errors"
	"log/slog"

	"github.com/doppel-dev/doppel/protocol"
)

// ErrNotSupported: incoming traffic needs Linux network namespaces.
var ErrNotSupported = errors.New("incoming: not supported on this system")

// Pod is the target's network namespace.
type Pod interface {
	Socket(domain, typ, proto int) (int, error)
	InNetns(f func() error) error
}

// Options configure a Manager.
type Options struct {
	Logger  *slog.Logger
	Backend string
}

// Manager refuses every subscription outside Linux.
type Manager struct{}

// NewManager returns a Manager that refuses subscriptions.
func NewManager(Pod, Options) *Manager { return &Manager{} }

func (*Manager) Subscribe(context.Context, *protocol.SessionInfo, protocol.SubscribeArgs) (protocol.SubscribeResult, error) {
	return protocol.SubscribeResult{}, ErrNotSupported
}
func (*Manager) Unsubscribe(context.Context, *protocol.SessionInfo, uint16) error { return nil }
func (*Manager) Pause(context.Context, *protocol.SessionInfo, bool) error         { return nil }
func (*Manager) SessionGone(string)                                               {}
func (*Manager) Close() error                                                     { return nil }
