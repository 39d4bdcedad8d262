package kube

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/doppel-dev/doppel/protocol"
)

// The kubelet reports a started container only at its next relist (up to
// a second later); an agent listens milliseconds after it starts. Here
// the API never reports the agent running, while the kubelet's own
// port-forward server reaches a real protocol server on loopback.

// fakeWithPortForward answers API requests from the fake and builds
// port-forward URLs (CoreV1's REST client) for the port-forward server.
type fakeWithPortForward struct {
	*fake.Clientset
	portForward kubernetes.Interface
}

func (c fakeWithPortForward) CoreV1() corev1client.CoreV1Interface {
	return coreWithPortForward{c.Clientset.CoreV1(), c.portForward.CoreV1().RESTClient()}
}

type coreWithPortForward struct {
	corev1client.CoreV1Interface
	rest rest.Interface
}

func (c coreWithPortForward) RESTClient() rest.Interface { return c.rest }

// envOnly is an agent that knows its environment and nothing else.
type envOnly struct{ protocol.Handler }

func (envOnly) Env(context.Context) ([]string, error) { return []string{"FROM_THE_POD=1"}, nil }

// countingListener counts the connections it accepts; with delay, each
// holds its first write back that long.
type countingListener struct {
	net.Listener
	n     atomic.Int32
	delay time.Duration
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.n.Add(1)
	if l.delay > 0 {
		c = &slowConn{Conn: c, delay: l.delay}
	}
	return c, nil
}

// serveAgent serves the protocol on loopback for token until ctx ends.
func serveAgent(ctx context.Context, t *testing.T, token string, delay time.Duration) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingListener{Listener: ln, delay: delay}
	srv := &protocol.Server{Handler: envOnly{}, TokenHashes: []protocol.TokenHash{protocol.HashToken(token)}}
	go srv.Serve(ctx, counted)
	return counted
}

// greetCluster is a fake cluster whose agent pods stay ContainerCreating,
// in front of a port-forward server; agent, when set, serves the agent's
// port there.
func greetCluster(t *testing.T, agent string, state corev1.ContainerState, refuse func(http.ResponseWriter) bool) (*fakeCluster, *Client) {
	t.Helper()
	f := newFakeCluster(t)
	f.agentState = &state
	ports := map[int32]string{}
	if agent != "" {
		ports[AgentPort] = agent
	}
	pf := portForwardServer(t, ports, refuse)
	return f, &Client{Config: pf.Config, Clientset: fakeWithPortForward{f.cs, pf.Clientset}, Namespace: "ns"} // plain SPDY, WebSocket fallback: the default
}

// setAgentState sets the agent container's state in the agent pod, as
// the kubelet reports it (from a test's goroutine: errors are t.Error).
func (f *fakeCluster) setAgentState(ctx context.Context, t *testing.T, state corev1.ContainerState) {
	pods, err := f.cs.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) == 0 {
		t.Errorf("no agent pod: %v", err)
		return
	}
	pod := pods.Items[0]
	pod.Status.ContainerStatuses[0].State = state
	if _, err := f.cs.CoreV1().Pods("ns").UpdateStatus(ctx, &pod, metav1.UpdateOptions{}); err != nil {
		t.Error(err)
	}
}

func TestStartAgentGreetsBeforeRunning(t *testing.T) {
	token := protocol.NewToken()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	counted := serveAgent(ctx, t, token, 0)
	creating := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	_, c := greetCluster(t, counted.Addr().String(), creating, nil)

	opts := sharedOpts(token)
	opts.Config.StartupTimeout = 3
	// Without the hello StartAgent waits for the API, which never says
	// the container runs.
	if _, err := c.StartAgent(ctx, opts); ReasonOf(err) != ReasonTimeout {
		t.Fatalf("StartAgent without a hello = %v, want the startup timeout", err)
	}
	// Cancelled (^C) is no timeout.
	_, c = greetCluster(t, counted.Addr().String(), creating, nil)
	cctx, stop := context.WithCancel(ctx)
	time.AfterFunc(300*time.Millisecond, stop)
	if _, err := c.StartAgent(cctx, opts); !errors.Is(err, context.Canceled) || ReasonOf(err) == ReasonTimeout {
		t.Fatalf("StartAgent cancelled = %v, want context.Canceled", err)
	}

	// The kubelet answers "pod not found" (a 500, as a proxy without SPDY
	// might) until the pod's sandbox runs: that must not move the client
	// to WebSocket for good.
	var refused atomic.Int32
	_, c = greetCluster(t, counted.Addr().String(), creating, func(w http.ResponseWriter) bool {
		if refused.Add(1) > 3 {
			return false
		}
		http.Error(w, `pod not found ("doppel-agent-x_ns")`, http.StatusInternalServerError)
		return true
	})
	hello := protocol.Hello{SessionID: "greeted", Token: token}
	opts.Hello = &hello
	var steps []string
	opts.Progress = func(p Progress) { steps = append(steps, p.Step) }
	start := time.Now()
	a, err := c.StartAgent(ctx, opts)
	if err != nil {
		t.Fatalf("StartAgent with the session's hello: %v (steps %q)", err, steps)
	}
	t.Logf("greeted after %s: %q", time.Since(start).Round(time.Millisecond), steps)
	if !slices.Contains(steps, "agent running") {
		t.Errorf("steps %q", steps)
	}
	before := counted.n.Load()
	cl, err := a.Connect(ctx, hello)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	env, err := cl.Env(ctx)
	if err != nil || !slices.Contains(env, "FROM_THE_POD=1") {
		t.Fatalf("Env through the greeting's connection = %q, %v", env, err)
	}
	if n := counted.n.Load(); n != before {
		t.Errorf("Connect dialed the agent again (%d connections, %d before it)", n, before)
	}
	if refused.Load() < 4 || c.pfWebSocket.Load() {
		t.Errorf("after %d refusals the client's next port-forward is WebSocket: %v", refused.Load(), c.pfWebSocket.Load())
	}
}

func TestStartAgentGreetingStopsAtADeadEnd(t *testing.T) {
	// Nothing listens while the image can't be had: the greeting keeps
	// failing, and the pod's dead end is what StartAgent reports.
	f, c := greetCluster(t, "", corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := sharedOpts("token")
	hello := protocol.Hello{SessionID: "s", Token: "token"}
	opts.Hello = &hello
	go func() {
		// The kubelet gives up on the image a moment later.
		time.Sleep(300 * time.Millisecond)
		f.setAgentState(ctx, t, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: "no image"}})
	}()
	a, err := c.StartAgent(ctx, opts)
	if ReasonOf(err) != ReasonImagePull {
		t.Fatalf("StartAgent = %+v, %v; want the image pull error", a, err)
	}
	// The failed start left nothing behind.
	jobs, err := f.cs.BatchV1().Jobs("ns").List(ctx, metav1.ListOptions{})
	if err != nil || len(jobs.Items) != 0 {
		t.Errorf("jobs left: %d, %v", len(jobs.Items), err)
	}
}

// slowConn holds its first write (the agent's first answer) back.
type slowConn struct {
	net.Conn
	delay time.Duration
	once  sync.Once
}

func (c *slowConn) Write(b []byte) (int, error) {
	c.once.Do(func() { time.Sleep(c.delay) })
	return c.Conn.Write(b)
}

func TestStartAgentFinishesTheGreetingUnderWay(t *testing.T) {
	// The API reports the container running while the agent is still
	// answering the greeting: cutting the hello off would leave the agent
	// holding the session, and Connect's own hello would be refused as a
	// session in use. The greeting is finished and handed on instead.
	token := protocol.NewToken()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	counted := serveAgent(ctx, t, token, 500*time.Millisecond)
	f, c := greetCluster(t, counted.Addr().String(), corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}, nil)
	go func() {
		for counted.n.Load() == 0 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		f.setAgentState(ctx, t, corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})
	}()
	opts := sharedOpts(token)
	hello := protocol.Hello{SessionID: "under-way", Token: token}
	opts.Hello = &hello
	a, err := c.StartAgent(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := a.Connect(ctx, hello)
	if err != nil {
		t.Fatalf("Connect after a greeting under way: %v", err)
	}
	defer cl.Close()
	if _, err := cl.Env(ctx); err != nil {
		t.Fatal(err)
	}
	if n := counted.n.Load(); n != 1 {
		t.Errorf("the agent was dialed %d times, want once (the greeting)", n)
	}
}
