package ide

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/helper/session"
	"github.com/doppel-dev/doppel/protocol"
)

// A pause and a continue sent back to back reach the agent in the order
// the IDE sent them, however their handlers are scheduled: the agent ends
// up told the debuggee runs.
func TestDebuggeeStateKeepsItsOrder(t *testing.T) {
	var mu sync.Mutex
	var told []bool
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	sess := &ideSession{id: "s", log: slog.New(slog.DiscardHandler), state: StateReady}
	sess.setPausedFn = func(ctx context.Context, paused bool) (bool, error) {
		entered <- struct{}{}
		if paused {
			<-release // the pause is slow to reach the agent
		}
		mu.Lock()
		told = append(told, paused)
		mu.Unlock()
		return true, nil
	}
	var wg sync.WaitGroup
	sync := func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess.syncPaused(context.Background())
		}()
	}
	sess.wantPaused(true)
	sync()
	<-entered // the pause is on its way
	sess.wantPaused(false)
	sync()
	time.Sleep(100 * time.Millisecond) // the continue's handler runs while the pause is slow
	close(release)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(told) == 0 || told[len(told)-1] {
		t.Fatalf("the agent was told %v: it keeps the debuggee paused after the IDE said it continued", told)
	}
	if sess.info().Paused || sess.told {
		t.Errorf("the session says paused=%v told=%v after a continue", sess.info().Paused, sess.told)
	}

	// The same state again tells the agent nothing.
	n := len(told)
	sess.wantPaused(false)
	sess.syncPaused(context.Background())
	if len(told) != n {
		t.Errorf("a repeated continue was passed on: %v", told)
	}
	if !slices.Equal(told, []bool{true, false}) {
		t.Errorf("the agent was told %v, want [true false]", told)
	}
}

// envAgent is an agent's handler that knows only the pod's environment:
// enough for a session to start.
type envAgent struct{ protocol.Handler }

func (envAgent) Env(context.Context) ([]string, error)    { return []string{"POD=1"}, nil }
func (envAgent) Hostname(context.Context) (string, error) { return "pod", nil }

// startAgent serves an in-process agent on loopback and reports how many
// sessions it holds.
func startAgent(t *testing.T) (addr, token string, sessions chan int) {
	t.Helper()
	token = "test-token"
	sessions = make(chan int, 16)
	srv := &protocol.Server{Handler: envAgent{}, TokenHashes: []protocol.TokenHash{protocol.HashToken(token)},
		ResumeGrace: time.Second, OnSessionsChanged: func(n int) { sessions <- n }}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, l)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return l.Addr().String(), token, sessions
}

// A session whose start finishes just after the client went away (no
// shutdown) is ended, not left holding its agent session.
func TestStartFinishingAfterTheClientLeft(t *testing.T) {
	addr, token, sessions := startAgent(t)
	started := make(chan struct{})
	shim := filepath.Join(t.TempDir(), "libdoppel.so") // never loaded: the launch is only resolved
	os.WriteFile(shim, nil, 0o644)
	c := startServer(t, Options{AgentAddress: addr, AgentToken: token, Shim: shim,
		Start: func(ctx context.Context, o session.StartOptions) (*session.Run, error) {
			run, err := session.Start(context.WithoutCancel(ctx), o)
			close(started)
			<-ctx.Done() // the backend stops while the start finishes
			return run, err
		}})
	c.initialize()
	callCtx, cancelCall := context.WithCancel(context.Background())
	go c.conn.Call(callCtx, MethodResolveLaunch, ResolveLaunchParams{Launch: map[string]any{"type": "node", "request": "launch"}}, nil)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not start")
	}
	if n := <-sessions; n != 1 {
		t.Fatalf("the agent holds %d sessions, want 1", n)
	}
	cancelCall()
	c.conn.Close() // the IDE's stream closes: endAll without shutdown
	select {
	case n := <-sessions:
		if n != 0 {
			t.Errorf("the agent holds %d sessions, want 0", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session that started as the backend stopped still holds the agent 10s later")
	}
}
