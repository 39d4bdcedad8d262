package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
)

// PortForwardMode chooses how the port-forward reaches the API server.
type PortForwardMode string

const (
	// PortForwardAuto (the default, "") tries plain SPDY first (spoken by
	// spdyConn) and falls
	// back to SPDY tunnelled in a WebSocket when the SPDY upgrade fails
	// (a proxy or load balancer in front of the API server that passes
	// only WebSocket upgrades, or an API server without SPDY); the mode
	// that worked is kept for the client's later dials. Plain SPDY costs
	// the whole path less CPU and carries more (notes/transport.md,
	// docs/agent.md "Transport").
	PortForwardAuto PortForwardMode = ""
	// PortForwardWebSocket tunnels SPDY in a WebSocket, as kubectl does
	// since 1.31, falling back to plain SPDY when the WebSocket upgrade is
	// refused: kubectl's order.
	PortForwardWebSocket PortForwardMode = "websocket"
	// PortForwardSPDY is the plain SPDY/3.1 upgrade only.
	PortForwardSPDY PortForwardMode = "spdy"
)

// DialPod opens one TCP connection to port in a pod through the API
// server's port-forward, in-process: no local listener. The connection
// owns its own port-forward session, so closing it ends both, and a
// broken one is replaced by dialing again.
func (c *Client) DialPod(ctx context.Context, namespace, pod string, port int) (net.Conn, error) {
	return c.dialPod(ctx, namespace, pod, port, true)
}

// probePod is DialPod that never changes protocols: a pod that is still
// starting refuses port-forwards in ways a proxy that passes no SPDY
// would too (the kubelet's "pod not found" is a 500), and that must not
// move the client's later dials to WebSocket.
func (c *Client) probePod(ctx context.Context, namespace, pod string, port int) (net.Conn, error) {
	return c.dialPod(ctx, namespace, pod, port, false)
}

func (c *Client) dialPod(ctx context.Context, namespace, pod string, port int, fallback bool) (net.Conn, error) {
	u := c.Clientset.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward").URL()
	remote := podAddr(fmt.Sprintf("%s/%s:%d", namespace, pod, port))
	mode := c.PortForward
	if mode == PortForwardAuto && c.pfWebSocket.Load() {
		mode = PortForwardWebSocket // plain SPDY failed before
	}
	if mode != PortForwardWebSocket {
		conn, err := dialSPDY(ctx, c.Config, u, port, remote)
		if err == nil {
			return conn, nil
		}
		var stream *streamError
		if errors.As(err, &stream) {
			return nil, err // names the pod and port already
		}
		if !fallback || mode == PortForwardSPDY || ctx.Err() != nil || !spdyUpgradeFailed(err) {
			return nil, portForwardError(err, namespace, pod, port)
		}
		c.pfWebSocket.Store(true)
		return c.dialWebSocket(ctx, u, namespace, pod, port, remote, false)
	}
	return c.dialWebSocket(ctx, u, namespace, pod, port, remote, fallback)
}

// dialWebSocket opens the port-forward with client-go's SPDY tunnelled in
// a WebSocket, as kubectl does; with fallback, a refused WebSocket upgrade
// is tried again as plain SPDY (kubectl's order).
func (c *Client) dialWebSocket(ctx context.Context, u *url.URL, namespace, pod string, port int, remote net.Addr, fallback bool) (net.Conn, error) {
	ws, err := portforward.NewSPDYOverWebsocketDialer(u, c.Config)
	if err != nil {
		return nil, err
	}
	type dialed struct {
		conn httpstream.Connection
		err  error
	}
	ch := make(chan dialed, 1)
	go func() {
		conn, _, err := ws.Dial(portforward.PortForwardProtocolV1Name)
		ch <- dialed{conn, err}
	}()
	var conn httpstream.Connection
	select {
	case d := <-ch:
		if d.err != nil && fallback && (httpstream.IsUpgradeFailure(d.err) || httpstream.IsHTTPSProxyError(d.err)) {
			conn, err := dialSPDY(ctx, c.Config, u, port, remote)
			if err != nil {
				return nil, portForwardError(err, namespace, pod, port)
			}
			return conn, nil
		}
		if d.err != nil {
			return nil, portForwardError(d.err, namespace, pod, port)
		}
		conn = d.conn
	case <-ctx.Done():
		// The dialer takes no context: close what it returns later.
		go func() {
			if d := <-ch; d.conn != nil {
				d.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}

	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(port))
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	errStream, err := conn.CreateStream(headers)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("port-forward to %s/%s:%d: creating the error stream: %w", namespace, pod, port, err)
	}
	errStream.Close() // nothing is written to it
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(headers)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("port-forward to %s/%s:%d: creating the data stream: %w", namespace, pod, port, err)
	}
	pc := &podConn{conn: conn, data: data, remoteErr: make(chan struct{}), remote: remote}
	go pc.readErrors(errStream)
	return pc, nil
}

// spdyUpgradeFailed reports whether a plain SPDY port-forward failed in a
// way a WebSocket one might not: the upgrade was refused or broken (a
// proxy, an API server without SPDY), not the API server's own "no"
// (forbidden, no such pod, pod not running), which WebSocket would get too.
func spdyUpgradeFailed(err error) bool {
	var stream *streamError
	if errors.As(err, &stream) {
		return false
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		switch status.Status().Code {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusBadRequest:
			return false
		}
	}
	return true
}

func portForwardError(err error, namespace, pod string, port int) error {
	msg := err.Error()
	if strings.Contains(msg, "403") || strings.Contains(strings.ToLower(msg), "forbidden") {
		return errorf(ReasonForbidden, err, "cannot port-forward to pod %s in namespace %s: ask for RBAC verb \"create\" (and \"get\", for WebSocket port-forwards) on \"pods/portforward\" (API group \"\" (core)) in namespace %s", pod, namespace, namespace)
	}
	return fmt.Errorf("port-forward to %s/%s:%d: %w", namespace, pod, port, err)
}

// podConn is a port-forward data stream of client-go's (the WebSocket
// tunnel) as a net.Conn. When the kubelet
// cannot reach the port (nothing listens yet), the data stream just ends
// and the reason comes on the error stream: Read returns that reason.
type podConn struct {
	conn   httpstream.Connection
	data   httpstream.Stream
	remote net.Addr

	remoteErr chan struct{} // closed when the error stream ended
	errMsg    string

	closeOnce sync.Once
}

func (c *podConn) readErrors(s httpstream.Stream) {
	msg, _ := io.ReadAll(s)
	c.errMsg = strings.TrimSpace(string(msg))
	close(c.remoteErr)
}

func (c *podConn) Read(b []byte) (int, error) {
	n, err := c.data.Read(b)
	if err != nil && n == 0 {
		// The error stream ends with the data stream; give it a moment.
		select {
		case <-c.remoteErr:
			if c.errMsg != "" {
				return 0, fmt.Errorf("port-forward to %s: %s", c.remote, c.errMsg)
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
	return n, err
}

func (c *podConn) Write(b []byte) (int, error) { return c.data.Write(b) }

func (c *podConn) Close() error {
	c.closeOnce.Do(func() {
		c.data.Reset()
		c.conn.Close()
	})
	return nil
}

func (c *podConn) LocalAddr() net.Addr  { return podAddr("doppel") }
func (c *podConn) RemoteAddr() net.Addr { return c.remote }

// Deadlines are not supported by port-forward streams; yamux, the only
// user, needs none (it times writes out itself).
var errNoDeadline = errors.New("kube: port-forward connections have no deadlines")

func (c *podConn) SetDeadline(time.Time) error      { return errNoDeadline }
func (c *podConn) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (c *podConn) SetWriteDeadline(time.Time) error { return errNoDeadline }

type podAddr string

func (a podAddr) Network() string { return "portforward" }
func (a podAddr) String() string  { return string(a) }
