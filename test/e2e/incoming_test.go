//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/agent/target"
	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// Incoming traffic through a real pod: the staging backend runs locally
// under doppel against deployment/backend while the cluster's frontend,
// probes and other pods send it requests — mirrored, stolen, or stolen
// per request by HTTP filters.

const clusterGreeting = "This is a silly demo"

var buildBackend = buildOnce("backend", "./test/apps/staging/backend")

// localBackend runs the staging backend locally under doppel with the
// incoming config given, answering greeting, and waits until its port is
// subscribed.
func localBackend(t *testing.T, greeting, incoming, subscribed string) *doppelProc {
	t.Helper()
	bin, err := buildBackend()
	if err != nil {
		t.Fatal(err)
	}
	config := execConfig(t, "staging", "deployment/backend") +
		"feature:\n  network:\n    incoming: " + incoming + "\n"
	p := startDoppel(t, configDir(t, config), []string{"GREETING=" + greeting, "LOG_PROBES=1"}, "exec", "--", bin)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("doppel exec of %q:\n%s%s", greeting, p.stdout.String(), p.stderr.String())
		}
	})
	framework.Eventually(t, time.Minute, func() error {
		if !strings.Contains(p.stderr.String(), "port 8080 of the target: "+subscribed) {
			return fmt.Errorf("port 8080 not subscribed yet:\n%s", p.stderr.String())
		}
		return nil
	})
	return p
}

// frontendSays GETs the cluster's frontend page for user and reports
// whether it shows want.
func frontendSays(t *testing.T, frontend, user, want string) error {
	code, body := framework.HTTPGet(t, frontend+"/?user="+user)
	if code != 200 || !strings.Contains(body, want) {
		return fmt.Errorf("frontend for %s: %d, want %q in:\n%s", user, code, want, body)
	}
	return nil
}

func TestIncomingMirror(t *testing.T) {
	deployStaging(t)
	frontend := "http://" + cluster.PortForward(t, "staging", podOf(t, "frontend"), 8080)
	// The frontend may hold a keep-alive connection from before: reset it
	// (a mirror alone only sees new connections).
	p := localBackend(t, "mirrored locally", "{mode: mirror, flush_connections: true}", "mirror")
	user := fmt.Sprintf("mirror-%d", time.Now().UnixNano())
	// The cluster keeps answering; the local copy sees the requests too,
	// the kubelet's probes included.
	if err := frontendSays(t, frontend, user, clusterGreeting); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 30*time.Second, func() error {
		out := p.stderr.String() + p.stdout.String()
		for _, want := range []string{"Handling request URI=/?user=" + user, "Handling request URI=/readyz"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("the local backend did not log %q:\n%s", want, out)
			}
		}
		return nil
	})
}

func TestIncomingSteal(t *testing.T) {
	deployStaging(t)
	frontend := "http://" + cluster.PortForward(t, "staging", podOf(t, "frontend"), 8080)
	p := localBackend(t, "stolen by the local backend", "steal", "steal")
	if !strings.Contains(p.stderr.String(), "takes the target's probe requests too") {
		t.Errorf("no warning about the probe port:\n%s", p.stderr.String())
	}
	framework.Eventually(t, 30*time.Second, func() error {
		return frontendSays(t, frontend, "anyone", "stolen by the local backend")
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t, 30*time.Second)
	// The session ended: the cluster's backend answers again.
	framework.Eventually(t, 30*time.Second, func() error {
		return frontendSays(t, frontend, "anyone", clusterGreeting)
	})
}

func TestIncomingPathFilter(t *testing.T) {
	deployStaging(t)
	frontend := "http://" + cluster.PortForward(t, "staging", podOf(t, "frontend"), 8080)
	localBackend(t, "local backend of alice", `{mode: steal, http_filter: {path_filter: ".+user=alice.*"}}`, "steal (filtered)")
	framework.Eventually(t, 30*time.Second, func() error {
		return frontendSays(t, frontend, "alice", "local backend of alice")
	})
	for _, user := range []string{"bob", "carol"} {
		if err := frontendSays(t, frontend, user, clusterGreeting); err != nil {
			t.Error(err)
		}
	}
}

func TestIncomingTwoHeaderFilters(t *testing.T) {
	deployStaging(t)
	ns := cluster.Namespace(t, "incoming-client")
	client := cluster.RunPod(t, ns, framework.ToolboxPod("client", "sleep"))
	alice := localBackend(t, "backend of alice", `{mode: steal, http_filter: {header_filter: "^x-user: alice$"}}`, "steal (filtered)")
	bob := localBackend(t, "backend of bob", `{mode: steal, http_filter: {header_filter: "^x-user: bob$"}}`, "steal (filtered)")
	ask := func(user string) (string, error) {
		args := []string{"/toolbox", "get"}
		if user != "" {
			args = append(args, "-H", "x-user: "+user)
		}
		out, stderr, err := cluster.Exec(framework.Context(t, 20*time.Second), ns, client.Name, "main", append(args, "http://backend.staging/")...)
		if err != nil {
			return "", fmt.Errorf("%v: %s", err, stderr)
		}
		return strings.TrimSpace(out), nil
	}
	for _, c := range []struct{ user, want string }{
		{"alice", "backend of alice"}, {"bob", "backend of bob"}, {"carol", clusterGreeting}, {"", clusterGreeting},
		{"bob", "backend of bob"}, {"alice", "backend of alice"},
	} {
		got, err := ask(c.user)
		if err != nil || got != c.want {
			t.Errorf("x-user %q: got %q (%v), want %q", c.user, got, err, c.want)
		}
	}
	if t.Failed() {
		t.Logf("alice:\n%s\nbob:\n%s", alice.stderr.String(), bob.stderr.String())
	}
}

// SIGKILL of the agent during a steal and during a mirror: the pod's own
// server answers the frontend again at once — requests sent after the kill
// fail only if they were in flight on a connection the agent held (at most
// one here, requests one at a time).
func TestIncomingAgentKilled(t *testing.T) {
	deployStaging(t)
	frontend := "http://" + cluster.PortForward(t, "staging", podOf(t, "frontend"), 8080)
	for _, tc := range []struct{ incoming, subscribed, greeting string }{
		{"steal", "steal", "stolen until the agent is killed"},
		{"{mode: mirror, flush_connections: true}", "mirror", clusterGreeting},
	} {
		t.Run(tc.subscribed, func(t *testing.T) {
			p := localBackend(t, tc.greeting, tc.incoming, tc.subscribed)
			framework.Eventually(t, 30*time.Second, func() error {
				return frontendSays(t, frontend, "before", tc.greeting)
			})
			ctx := framework.Context(t, time.Minute)
			agent := agentPod(t, ctx, "staging")
			pid, err := target.FindContainer("/proc", agent.Status.ContainerStatuses[0].ContainerID)
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil { // the agent this test's session started
				t.Fatal(err)
			}
			killed := time.Now()
			failed := 0
			for i := range 20 {
				if err := frontendSays(t, frontend, fmt.Sprintf("after-%d", i), clusterGreeting); err != nil {
					failed++
					t.Logf("request %d after the kill: %v", i, err)
				}
			}
			t.Logf("20 requests in %s after the agent's SIGKILL, %d failed", time.Since(killed).Round(time.Millisecond), failed)
			if failed > 1 {
				t.Errorf("%d of 20 requests after the agent's SIGKILL failed, want at most the one in flight", failed)
			}
			p.cmd.Process.Signal(syscall.SIGTERM)
			p.wait(t, 30*time.Second)
		})
	}
}
