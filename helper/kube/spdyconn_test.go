package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	kubeletpf "k8s.io/kubelet/pkg/cri/streaming/portforward"

	"github.com/doppel-dev/doppel/internal/testnet"
)

// The kubelet's own port-forward server (what the API server proxies a
// plain SPDY port-forward to) in front of loopback ports: spdyConn against
// the real other end of the protocol.

type loopbackForwarder struct {
	ports map[int32]string // pod port -> loopback address
}

func (f loopbackForwarder) PortForward(ctx context.Context, _ string, _ types.UID, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	addr, ok := f.ports[port]
	if !ok {
		return fmt.Errorf("failed to connect to localhost:%d inside namespace: connection refused", port)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	done := make(chan struct{})
	go func() { io.Copy(stream, conn); close(done) }()
	io.Copy(conn, stream)
	conn.(*net.TCPConn).CloseWrite()
	<-done
	return nil
}

// portForwardServer is an HTTPS server serving port-forwards as the
// kubelet does; refuse, when set, answers upgrades instead.
func portForwardServer(t *testing.T, ports map[int32]string, refuse func(http.ResponseWriter) bool) *Client {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/portforward") {
			http.Error(w, "not a port-forward", http.StatusNotFound)
			return
		}
		if refuse != nil && refuse(w) {
			return
		}
		kubeletpf.ServePortForward(w, r, loopbackForwarder{ports}, "pod", "uid", nil, time.Minute, 10*time.Second,
			[]string{kubeletpf.ProtocolV1Name})
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := NewForConfig(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: ca}}, "ns")
	if err != nil {
		t.Fatal(err)
	}
	c.PortForward = PortForwardSPDY
	return c
}

func TestSPDYConnCarriesBothWays(t *testing.T) {
	c := portForwardServer(t, map[int32]string{7000: testnet.Serve(t, testnet.Echo)}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := c.DialPod(ctx, "ns", "pod", 7000)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, ok := conn.(*spdyConn); !ok {
		t.Fatalf("DialPod gave a %T, want the plain SPDY client", conn)
	}
	// More than one data frame holds (24-bit length), sent as one write
	// of two buffers, as yamux's header and body come.
	payload := make([]byte, spdyMaxData+5000)
	rand.Read(payload)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(conn, int64(len(payload)+3)))
		got <- b
	}()
	n, err := conn.(*spdyConn).WriteVectors([]byte("hdr"), payload)
	if err != nil || n != len(payload)+3 {
		t.Fatalf("WriteVectors = %d, %v; want %d", n, err, len(payload)+3)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, append([]byte("hdr"), payload...)) {
			t.Fatalf("echoed %d bytes, not what was sent (%d)", len(b), len(payload)+3)
		}
	case <-ctx.Done():
		t.Fatal("no echo")
	}
	// Small writes keep their order and boundaries do not matter.
	for i := range 100 {
		msg := fmt.Sprintf("message %d\n", i)
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo of %q = %q, %v", msg, buf, err)
		}
	}
}

func TestSPDYConnReportsTheKubeletsError(t *testing.T) {
	c := portForwardServer(t, map[int32]string{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The kubelet may end the streams before or after it replied to them:
	// the reason comes from DialPod or from the first Read.
	conn, err := c.DialPod(ctx, "ns", "pod", 7001)
	if err == nil {
		defer conn.Close()
		conn.Write([]byte("hello"))
		_, err = conn.Read(make([]byte, 10))
	}
	if err == nil || !strings.Contains(err.Error(), "connection refused") ||
		strings.Count(err.Error(), "port-forward to ns/pod:7001:") != 1 {
		t.Fatalf("got %v, want the kubelet's reason after one \"port-forward to ns/pod:7001:\"", err)
	}
}

func TestSPDYUpgradeRefused(t *testing.T) {
	forbidden := func(w http.ResponseWriter) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"pod\" is forbidden: User \"dev\" cannot create resource \"pods/portforward\"","reason":"Forbidden","code":403}`)
		return true
	}
	c := portForwardServer(t, nil, forbidden)
	c.PortForward = PortForwardAuto
	_, err := c.DialPod(context.Background(), "ns", "pod", 7000)
	var kerr *Error
	if !errors.As(err, &kerr) || kerr.Reason != ReasonForbidden || !strings.Contains(err.Error(), `RBAC verb "create"`) {
		t.Fatalf("DialPod = %v, want a Forbidden error naming the RBAC verb", err)
	}
	if c.pfWebSocket.Load() {
		t.Error("a Status refusal switched the client to WebSocket: it would be refused the same")
	}

	// A refusal without a Status (a proxy that passes no SPDY upgrade)
	// sends later dials to WebSocket.
	var tries atomic.Int32
	noSPDY := func(w http.ResponseWriter) bool {
		tries.Add(1)
		http.Error(w, "upgrade not allowed", http.StatusBadRequest)
		return true
	}
	c = portForwardServer(t, nil, noSPDY)
	c.PortForward = PortForwardAuto
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.DialPod(ctx, "ns", "pod", 7000); err == nil {
		t.Fatal("DialPod through a server refusing every upgrade succeeded")
	}
	if !c.pfWebSocket.Load() || tries.Load() != 2 {
		t.Fatalf("after a plain refusal: WebSocket next = %v, upgrade attempts = %d; want true, 2 (SPDY, then WebSocket)", c.pfWebSocket.Load(), tries.Load())
	}
}

// A connection that ends without the data stream's FIN (the API server's
// connection dropped, mid-frame or between frames) is not the pod's EOF:
// a download cut there must not look complete.
func TestSPDYConnEndWithoutFIN(t *testing.T) {
	frame := func(payload string, fin bool) []byte {
		flags := byte(0)
		if fin {
			flags = spdyDataFin
		}
		return append(appendDataHeader(nil, spdyDataStream, flags, len(payload)), payload...)
	}
	for name, tc := range map[string]struct {
		wire    []byte
		wantErr error
	}{
		"with FIN":       {append(frame("hello", false), frame(" world", true)...), io.EOF},
		"between frames": {frame("hello world", false), io.ErrUnexpectedEOF},
		"mid-frame":      {frame("hello world", false)[:8+5], io.ErrUnexpectedEOF},
	} {
		t.Run(name, func(t *testing.T) {
			a, b := net.Pipe()
			go func() { b.Write(tc.wire); b.Close() }()
			c := newSPDYConn(a, nil, podAddr("test"))
			c.errDone = true // no error stream in this test
			got, err := io.ReadAll(c)
			if tc.wantErr == io.EOF {
				if err != nil || string(got) != "hello world" {
					t.Fatalf("read %q, %v; want the whole payload and EOF", got, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("read %q, %v; want %v", got, err, tc.wantErr)
			}
		})
	}
}

// A cancelled dial stops waiting for the upgrade's answer at once, not at
// the upgrade's own deadline (the early greeting cancels dials under way).
func TestSPDYUpgradeCancelled(t *testing.T) {
	release := make(chan struct{})
	c := portForwardServer(t, nil, func(http.ResponseWriter) bool { <-release; return true })
	defer close(release)
	c.PortForward = PortForwardSPDY
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.DialPod(ctx, "ns", "pod", 7000)
	if took := time.Since(start); err == nil || took > 5*time.Second {
		t.Fatalf("DialPod cancelled after 200ms returned %v after %s", err, took.Round(time.Millisecond))
	}
}
