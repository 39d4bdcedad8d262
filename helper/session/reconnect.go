package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/doppel-dev/doppel/protocol"
)

// DialFunc opens (resume=false) or resumes (resume=true) the session's
// connection to its agent.
type DialFunc func(ctx context.Context, resume bool) (*protocol.Client, error)

// Reconnecting is a Remote that survives transport drops: when the
// port-forward breaks, the next call redials and resumes the session by
// id, so the local process keeps running. Connections that were open at
// the drop end; new ones work again once the agent is back.
type Reconnecting struct {
	dial  DialFunc
	log   *slog.Logger
	grace time.Duration // how long to keep trying before giving up

	mu       sync.Mutex
	client   *protocol.Client
	redialed chan struct{} // closed when a redial in progress ends
	closed   bool
	ended    error                  // why a redial gave up: later calls fail at once
	incoming func(*protocol.Client) // serves the agent's streams on each client
	// OnState, if set, hears "reconnecting" and "ready" (for the IDE).
	OnState func(state string, err error)
}

// NewReconnecting wraps a connected client.
func NewReconnecting(client *protocol.Client, dial DialFunc, grace time.Duration, log *slog.Logger) *Reconnecting {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconnecting{client: client, dial: dial, grace: grace, log: log}
}

var _ Remote = (*Reconnecting)(nil)

// current returns a live client, redialling if the transport broke.
func (r *Reconnecting) current(ctx context.Context) (*protocol.Client, error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, protocol.ErrClosed
		}
		if r.ended != nil {
			r.mu.Unlock()
			return nil, r.ended
		}
		c := r.client
		select {
		case <-c.Done():
		default:
			r.mu.Unlock()
			return c, nil
		}
		if !errors.Is(c.Err(), protocol.ErrConnectionLost) {
			r.mu.Unlock()
			return nil, c.Err()
		}
		if wait := r.redialed; wait != nil {
			r.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		r.redialed = make(chan struct{})
		r.mu.Unlock()
		err := r.redial(ctx, c.Err())
		r.mu.Lock()
		close(r.redialed)
		r.redialed = nil
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

func (r *Reconnecting) redial(ctx context.Context, cause error) error {
	if r.OnState != nil {
		r.OnState("reconnecting", cause)
	}
	r.log.Info("connection to the agent lost: reconnecting", "err", cause)
	deadline := time.Now().Add(r.grace)
	for attempt := 0; ; attempt++ {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		c, err := r.dial(dctx, true)
		cancel()
		if err == nil {
			r.mu.Lock()
			if r.closed {
				// Closed while this redial ran: the new connection would
				// keep the agent (and the session's subscriptions) alive.
				r.mu.Unlock()
				c.Close()
				return protocol.ErrClosed
			}
			r.client = c
			serve := r.incoming
			r.mu.Unlock()
			if serve != nil {
				go serve(c)
			}
			r.log.Info("reconnected to the agent", "attempts", attempt+1)
			if r.OnState != nil {
				r.OnState("ready", nil)
			}
			return nil
		}
		if ctx.Err() != nil {
			// Only this caller stopped waiting (a DNS answer's timeout, a
			// closing run): the session has not ended, and the next
			// caller, or Watch, redials.
			return ctx.Err()
		}
		if time.Now().After(deadline) || errors.Is(err, protocol.ErrUnauthorized) {
			r.mu.Lock()
			r.ended = fmt.Errorf("the session with the agent ended: %w", err)
			closed := r.closed
			r.mu.Unlock()
			if r.OnState != nil && !closed {
				r.OnState("ended", err)
			}
			return err
		}
		time.Sleep(min(time.Duration(attempt+1)*200*time.Millisecond, 2*time.Second))
	}
}

// Watch redials as soon as the transport breaks, rather than at the next
// call, so that the user hears of a lost agent at once and a quiet process
// finds its session resumed. It returns when the session is closed, ctx
// ends, or a redial gave up (OnState has heard "ended" with the reason).
func (r *Reconnecting) Watch(ctx context.Context) {
	for {
		r.mu.Lock()
		c, closed := r.client, r.closed
		r.mu.Unlock()
		if closed {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-c.Done():
		}
		r.mu.Lock()
		closed = r.closed
		r.mu.Unlock()
		if closed || !errors.Is(c.Err(), protocol.ErrConnectionLost) {
			return
		}
		if _, err := r.current(ctx); err != nil {
			return
		}
	}
}

// Subscribe subscribes a port of the target; subscriptions survive resumes.
func (r *Reconnecting) Subscribe(ctx context.Context, args protocol.SubscribeArgs) (protocol.SubscribeResult, error) {
	return do(ctx, r, func(c *protocol.Client) (protocol.SubscribeResult, error) { return c.Subscribe(ctx, args) })
}

// Unsubscribe ends a subscription.
func (r *Reconnecting) Unsubscribe(ctx context.Context, port uint16) error {
	_, err := do(ctx, r, func(c *protocol.Client) (struct{}, error) { return struct{}{}, c.Unsubscribe(ctx, port) })
	return err
}

// Pause tells the agent the local process is paused in a debugger (or
// runs again); like subscriptions, it survives resumes.
func (r *Reconnecting) Pause(ctx context.Context, paused bool) error {
	_, err := do(ctx, r, func(c *protocol.Client) (struct{}, error) { return struct{}{}, c.Pause(ctx, paused) })
	return err
}

// ServeIncoming serves the agent's incoming streams on this client and on
// every client after a reconnect.
func (r *Reconnecting) ServeIncoming(f protocol.IncomingFunc, onAbort func(protocol.IncomingHeader)) {
	serve := func(c *protocol.Client) { c.ServeIncoming(f, onAbort) }
	r.mu.Lock()
	r.incoming = serve
	c := r.client
	r.mu.Unlock()
	go serve(c)
}

// Close ends the session with the agent.
func (r *Reconnecting) Close() error {
	r.mu.Lock()
	r.closed = true
	c := r.client
	r.mu.Unlock()
	if n := c.BulkCount(); n > 0 {
		r.log.Debug("downloads went on port-forwards of their own", "count", n)
	}
	return c.Close()
}

// do runs f on a live client, once more after a reconnect if the transport
// broke under it.
func do[T any](ctx context.Context, r *Reconnecting, f func(*protocol.Client) (T, error)) (T, error) {
	var zero T
	for attempt := 0; attempt < 2; attempt++ {
		c, err := r.current(ctx)
		if err != nil {
			return zero, err
		}
		v, err := f(c)
		if err == nil || !errors.Is(err, protocol.ErrConnectionLost) {
			return v, err
		}
	}
	return zero, protocol.ErrConnectionLost
}

func (r *Reconnecting) Env(ctx context.Context) ([]string, error) {
	return do(ctx, r, func(c *protocol.Client) ([]string, error) { return c.Env(ctx) })
}

func (r *Reconnecting) Hostname(ctx context.Context) (string, error) {
	return do(ctx, r, func(c *protocol.Client) (string, error) { return c.Hostname(ctx) })
}

func (r *Reconnecting) DNS(ctx context.Context, q []byte) ([]byte, error) {
	return do(ctx, r, func(c *protocol.Client) ([]byte, error) { return c.DNS(ctx, q) })
}

func (r *Reconnecting) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	return do(ctx, r, func(c *protocol.Client) (net.Conn, error) { return c.DialTCP(ctx, addr) })
}

func (r *Reconnecting) DialTCPEarly(ctx context.Context, addr string) (net.Conn, error) {
	return do(ctx, r, func(c *protocol.Client) (net.Conn, error) { return c.DialTCPEarly(ctx, addr) })
}

func (r *Reconnecting) DialUDP(ctx context.Context, addr string) (net.Conn, error) {
	return do(ctx, r, func(c *protocol.Client) (net.Conn, error) { return c.DialUDP(ctx, addr) })
}

type openResult struct {
	rc   io.ReadCloser
	info protocol.FileInfo
}

func (r *Reconnecting) Open(ctx context.Context, path string) (io.ReadCloser, protocol.FileInfo, error) {
	res, err := do(ctx, r, func(c *protocol.Client) (openResult, error) {
		rc, info, err := c.Open(ctx, path)
		return openResult{rc, info}, err
	})
	return res.rc, res.info, err
}

func (r *Reconnecting) Stat(ctx context.Context, path string) (protocol.FileInfo, error) {
	return do(ctx, r, func(c *protocol.Client) (protocol.FileInfo, error) { return c.Stat(ctx, path) })
}

func (r *Reconnecting) Lstat(ctx context.Context, path string) (protocol.FileInfo, error) {
	return do(ctx, r, func(c *protocol.Client) (protocol.FileInfo, error) { return c.Lstat(ctx, path) })
}

func (r *Reconnecting) Readlink(ctx context.Context, path string) (string, error) {
	return do(ctx, r, func(c *protocol.Client) (string, error) { return c.Readlink(ctx, path) })
}

func (r *Reconnecting) ReadDir(ctx context.Context, path string) ([]protocol.DirEntry, error) {
	return do(ctx, r, func(c *protocol.Client) ([]protocol.DirEntry, error) { return c.ReadDir(ctx, path) })
}
