//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/test/e2e/framework"
)

var buildToolbox = buildOnce("toolbox", "./test/apps/toolbox")

// A filtered steal of a port that carries more than HTTP/1 requests: an
// Upgrade turned into a tunnel (as WebSocket is) goes to whoever the
// filter picks, gRPC-shaped calls on one cleartext HTTP/2 connection are
// routed per stream with their trailers, and bytes that are no HTTP reach
// the pod's own server untouched. The target and the local process are the
// same server (toolbox serve), telling who answered by name.
func TestIncomingFilteredProtocols(t *testing.T) {
	ns := cluster.Namespace(t, "protocols")
	target := cluster.RunPod(t, ns, framework.ToolboxPod("target", "serve", "-port", "8080"))
	client := cluster.RunPod(t, ns, framework.ToolboxPod("client", "sleep"))
	bin, err := buildToolbox()
	if err != nil {
		t.Fatal(err)
	}
	config := execConfig(t, ns, "pod/target") +
		"feature:\n  network:\n    incoming: {mode: steal, http_filter: {header_filter: \"^x-user: me$\"}}\n"
	p := startDoppel(t, configDir(t, config), nil, "exec", "--", bin, "serve", "-name", "local", "-port", "8080")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("doppel exec:\n%s%s", p.stdout.String(), p.stderr.String())
		}
	})
	framework.Eventually(t, time.Minute, func() error {
		if !strings.Contains(p.stderr.String(), "port 8080 of the target: steal (filtered)") {
			return fmt.Errorf("port 8080 not subscribed yet")
		}
		return nil
	})
	run := func(args ...string) (string, error) {
		out, stderr, err := cluster.Exec(framework.Context(t, time.Minute), ns, client.Name, "main", append([]string{"/toolbox"}, args...)...)
		if err != nil {
			return out, fmt.Errorf("%v: %s", err, stderr)
		}
		return out, nil
	}
	base := "http://" + target.Status.PodIP + ":8080"

	t.Run("upgrade", func(t *testing.T) {
		for _, tc := range []struct {
			headers []string
			want    string
		}{
			{[]string{"-H", "x-user: me"}, "local: one\nlocal: two\n"},
			{nil, "target: one\ntarget: two\n"},
		} {
			args := append(append([]string{"upgrade"}, tc.headers...), base+"/upgrade", "one", "two")
			if out, err := run(args...); err != nil || out != tc.want {
				t.Errorf("upgrade %v: %q %v, want %q", tc.headers, out, err, tc.want)
			}
		}
	})
	t.Run("grpc", func(t *testing.T) {
		want := "1 local grpc-status=0 proto=HTTP/2.0\n2 target grpc-status=0 proto=HTTP/2.0\n"
		if out, err := run("h2c", "-H", "x-user: me", base+"/echo.Echo/Say"); err != nil || out != want {
			t.Errorf("h2c: %q %v, want %q", out, err, want)
		}
	})
	t.Run("not http", func(t *testing.T) {
		// No method token: the agent passes the connection through, and the
		// pod's own Go server answers what it can't parse — its 400 has a
		// body, the agent's own refusals have none.
		out, err := run("raw", target.Status.PodIP+":8080", `{"not": "http"}\r\n\r\n`)
		if err != nil || !strings.HasPrefix(out, "HTTP/1.1 400") || !strings.HasSuffix(out, "\r\n\r\n400 Bad Request") {
			t.Errorf("raw: %q %v, want the pod's server's 400", out, err)
		}
		if strings.Contains(p.stdout.String(), "not") {
			t.Errorf("the local server saw the bytes:\n%s", p.stdout.String())
		}
	})
}
