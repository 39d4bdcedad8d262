package protocol

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// incomingPod is a fake pod that serves incoming traffic: it remembers the
// sessions that subscribed and the sessions that went.
type incomingPod struct {
	*fakePod
	mu     sync.Mutex
	subs   map[uint16]*SessionInfo
	gone   []string
	subCh  chan *SessionInfo
	paused map[string]bool
}

func (p *incomingPod) Subscribe(_ context.Context, s *SessionInfo, args SubscribeArgs) (SubscribeResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if o := p.subs[args.Port]; o != nil && o.ID != s.ID && !args.Override {
		return SubscribeResult{}, &RemoteError{Code: CodeConflict, Errno: syscall.EADDRINUSE, Message: "taken by " + o.Client.User}
	}
	p.subs[args.Port] = s
	p.subCh <- s
	return SubscribeResult{Warnings: []string{"careful"}}, nil
}

func (p *incomingPod) Unsubscribe(_ context.Context, s *SessionInfo, port uint16) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.subs, port)
	return nil
}

func (p *incomingPod) Pause(_ context.Context, s *SessionInfo, paused bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused == nil {
		p.paused = map[string]bool{}
	}
	p.paused[s.ID] = paused
	return nil
}

func (p *incomingPod) SessionGone(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gone = append(p.gone, id)
}

func TestIncomingStreams(t *testing.T) {
	pod := &incomingPod{fakePod: newFakePod(), subs: map[uint16]*SessionInfo{}, subCh: make(chan *SessionInfo, 4)}
	a := startAgent(t, func(s *Server) { s.Handler = pod })
	ctx := testCtx(t)
	c := a.client(t)

	// The helper's local process: an echo server that upper-cases.
	local := echoServer(t, func(conn net.Conn) {
		b, _ := io.ReadAll(conn)
		for i := range b {
			if b[i] >= 'a' && b[i] <= 'z' {
				b[i] -= 'a' - 'A'
			}
		}
		conn.Write(b)
		conn.Close()
	})
	aborted := make(chan IncomingHeader, 1)
	go c.ServeIncoming(func(ctx context.Context, hdr IncomingHeader) (net.Conn, error) {
		if hdr.Port != 8080 {
			return nil, syscall.ECONNREFUSED
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", local)
	}, func(h IncomingHeader) { aborted <- h })

	res, err := c.Subscribe(ctx, SubscribeArgs{Port: 8080, Mode: ModeSteal, Filter: &HTTPFilter{Path: "^/a"}})
	if err != nil || len(res.Warnings) != 1 {
		t.Fatalf("subscribe: %v %v", res, err)
	}
	si := <-pod.subCh
	if si.Client.User != "dev" || si.Started.IsZero() {
		t.Errorf("session info %+v", si)
	}

	// A stolen connection: bytes both ways, half-close propagated.
	conn, err := si.OpenIncoming(ctx, IncomingHeader{Port: 8080, Mode: ModeSteal, Remote: "10.0.0.7:5555", Local: "10.0.0.9:8080"})
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("hello"))
	conn.(*IncomingConn).CloseWrite()
	got, _ := io.ReadAll(conn)
	conn.Close()
	if string(got) != "HELLO" {
		t.Errorf("through the incoming stream: %q", got)
	}

	// The helper can't reach a local listener: the agent hears the errno.
	if _, err := si.OpenIncoming(ctx, IncomingHeader{Port: 9090, Mode: ModeSteal}); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("no local listener: %v", err)
	}

	// An aborted mirror reaches the helper with its reason.
	m, err := si.OpenIncoming(ctx, IncomingHeader{Port: 8080, Mode: ModeMirror})
	if err != nil {
		t.Fatal(err)
	}
	m.(*IncomingConn).Abort(ReasonMirrorOverflow)
	select {
	case h := <-aborted:
		if h.Reason != ReasonMirrorOverflow || h.Port != 8080 {
			t.Errorf("abort header %+v", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the helper did not hear of the abort")
	}

	// A conflicting subscription is refused with the conflict code.
	h2 := a.hello("other")
	h2.Client.User = "bo"
	c2, err := a.dial(t, h2)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Subscribe(ctx, SubscribeArgs{Port: 8080, Mode: ModeSteal}); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("conflicting subscribe: %v", err)
	}
	var re *RemoteError
	if _, err := c2.Subscribe(ctx, SubscribeArgs{Port: 8080, Mode: "borrow"}); !errors.As(err, &re) || re.Code != CodeBadRequest {
		t.Errorf("bad mode: %v", err)
	}

	// Closing the session ends its subscriptions.
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pod.mu.Lock()
		gone := append([]string(nil), pod.gone...)
		pod.mu.Unlock()
		if len(gone) == 1 && gone[0] == si.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SessionGone calls %v", gone)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := si.OpenIncoming(ctx, IncomingHeader{Port: 8080, Mode: ModeSteal}); !errors.Is(err, ErrDetached) {
		t.Errorf("open on an ended session: %v", err)
	}
}

func TestSubscribeWithoutIncomingHandler(t *testing.T) {
	a := startAgent(t, nil)
	c := a.client(t)
	if _, err := c.Subscribe(testCtx(t), SubscribeArgs{Port: 80, Mode: ModeMirror}); !errors.Is(err, syscall.ENOSYS) {
		t.Errorf("subscribe on an agent without incoming traffic: %v", err)
	}
}
