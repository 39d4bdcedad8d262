//go:build e2e

package e2e

import (
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// cuttableProxy forwards loopback connections to the API server and can
// cut every connection it carries: a port-forward that breaks under a
// running session, as a flaky network or an API server restart does.
type cuttableProxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCuttableProxy(t *testing.T, upstream string) *cuttableProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttableProxy{l: l}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

// cut closes every connection carried so far and reports how many.
func (p *cuttableProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	n := len(p.conns) / 2
	p.conns = nil
	return n
}

func TestExecReconnect(t *testing.T) {
	ns, _ := sleeper(t, "reconnect")
	kc, err := clientcmd.LoadFromFile(os.Getenv("KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	ctxName := kc.CurrentContext
	cl := kc.Clusters[kc.Contexts[ctxName].Cluster]
	upstream := strings.TrimPrefix(cl.Server, "https://")
	proxy := newCuttableProxy(t, upstream)
	cl.Server = "https://" + proxy.l.Addr().String() // the API server's certificate names 127.0.0.1
	kubeconfig := t.TempDir() + "/kubeconfig"
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}

	// One local process for the whole test: a request every 0.3 s.
	script := `for i in $(seq 100); do echo "$i $(curl -s --max-time 3 http://echo/env/GREETING)"; sleep 0.3; done; echo "pid $$"`
	p := startDoppel(t, configDir(t, execConfig(t, ns, "pod/target")), []string{"KUBECONFIG=" + kubeconfig},
		"exec", "--", "bash", "-c", script)
	want := "hi from " + ns
	p.waitOutput(t, want, time.Minute)
	before := len(p.stdout.String())
	n := proxy.cut()
	cutAt := time.Now()
	t.Logf("cut %d connections to the API server", n)
	framework.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(p.stderr.String(), "reconnected to the agent") {
			return errorString("no reconnect yet; stderr:\n" + p.stderr.String())
		}
		return nil
	})
	t.Logf("reconnected %s after the cut", time.Since(cutAt).Round(time.Millisecond))
	if err := p.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("doppel exec: %v\nstderr:\n%s", err, p.stderr.String())
	}
	after := p.stdout.String()[before:]
	if ok := strings.Count(after, want); ok < 10 {
		t.Errorf("only %d requests answered after the reconnect:\n%s\nstderr:\n%s", ok, after, p.stderr.String())
	}
	if strings.Count(p.stdout.String(), "pid ") != 1 {
		t.Errorf("the local process did not run once through:\n%s", p.stdout.String())
	}
}
