//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// TestExecPortForwardProtocols runs a session over each port-forward
// protocol the helper speaks: plain SPDY (its own client, the default) and
// SPDY in a WebSocket (client-go's, kubectl's default; the fallback when a
// proxy passes no SPDY upgrade). Each carries a request, 48 MiB from a
// Service (moved to a port-forward of their own past 4 MiB) and a refused
// connection.
func TestExecPortForwardProtocols(t *testing.T) {
	ns := cluster.Namespace(t, "transport")
	cluster.RunPod(t, ns, framework.ToolboxPod("target", "serve", "-port", "8080"))
	echo, svc := echoService(t, ns)
	script := strings.Join([]string{
		`echo "greeting=$(curl -s --max-time 10 http://echo/env/GREETING)"`,
		`echo "bytes=$(curl -s --max-time 60 http://` + svc.Spec.ClusterIP + `/bytes/48 | wc -c)"`,
		`curl -s --max-time 10 http://` + echo.Status.PodIP + `:1/ >/dev/null; echo "refused=$?"`,
	}, "\n")
	for _, mode := range []string{"spdy", "websocket"} {
		t.Run(mode, func(t *testing.T) {
			p := startDoppel(t, configDir(t, execConfig(t, ns, "pod/target")), []string{"DOPPEL_PORT_FORWARD=" + mode, "DOPPEL_LOG=debug"},
				"exec", "--", "bash", "-c", script)
			if err := p.wait(t, 2*time.Minute); err != nil {
				t.Fatalf("doppel exec: %v\nstderr:\n%s", err, p.stderr.String())
			}
			got := map[string]string{}
			for _, line := range strings.Split(p.stdout.String(), "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					got[k] = strings.TrimSpace(v)
				}
			}
			want := map[string]string{"greeting": "hi from " + ns, "bytes": "50331648", "refused": "7"}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q\nstdout:\n%s\nstderr:\n%s", k, got[k], v, p.stdout.String(), p.stderr.String())
				}
			}
			// The 48 MiB went on a port-forward of their own (SPEC.md §7, "Bulk").
			if !strings.Contains(p.stderr.String(), "downloads went on port-forwards of their own") {
				t.Errorf("the download stayed on its stream\nstderr:\n%s", p.stderr.String())
			}
		})
	}
}
