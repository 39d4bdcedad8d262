package kube

import (
	"context"
	"net"
	"time"

	"github.com/doppel-dev/doppel/protocol"
)

// greeter says hello to a scheduled agent pod every 50 ms (500 ms after
// the first 3 s) until the agent answers: it listens milliseconds after
// its container starts, while the API reports the container running only
// after the kubelet's next relist. Until then a dial fails (no sandbox
// yet, or nothing listening) and is tried again, in the client's current
// protocol only (probePod); waitAgent meanwhile still watches for dead
// ends.
type greeter struct {
	done   chan struct{}
	client *protocol.Client // set before done closes, if the agent answered
	cancel context.CancelFunc
}

func greetAgent(ctx context.Context, a *Agent, hello protocol.Hello) *greeter {
	ctx, cancel := context.WithCancel(ctx)
	g := &greeter{done: make(chan struct{}), cancel: cancel}
	// Cancelling stops a dial, never a hello under way: the agent may
	// already hold the session, and Connect would then be told the
	// session is in use.
	probe := func(context.Context) (net.Conn, error) { return a.client.probePod(ctx, a.Namespace, a.Pod, a.Port) }
	go func() {
		defer close(g.done)
		start := time.Now()
		for {
			if cl, err := a.helloThrough(context.WithoutCancel(ctx), hello, probe); err == nil {
				g.client = cl
				return
			}
			// Past the first seconds the image is being pulled or the
			// node is slow: each try costs the API server and the kubelet
			// a request, so try less often.
			wait := 50 * time.Millisecond
			if time.Since(start) > 3*time.Second {
				wait = 500 * time.Millisecond
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
	return g
}

// stop ends the greeting and returns its connection, if it made one; a
// hello under way is finished first (within the protocol's hello timeout).
func (g *greeter) stop() *protocol.Client {
	g.cancel()
	<-g.done
	return g.client
}
