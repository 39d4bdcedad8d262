//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/helper/kube"
	"github.com/doppel-dev/doppel/protocol"
	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// sharedSession is one session of the shared-agent test: its own token,
// its own StartAgent and its own protocol client.
type sharedSession struct {
	name  string
	token string
	agent *kube.Agent
	c     *protocol.Client
}

// checkSession reads the target's env and GETs the echo Service through
// the session.
func checkSession(t *testing.T, ctx context.Context, s *sharedSession, ns, clusterIP string) {
	t.Helper()
	env, err := s.c.Env(ctx)
	if err != nil {
		t.Fatalf("%s: env: %v", s.name, err)
	}
	if !slices.Contains(env, "ROLE=backend-"+ns) {
		t.Errorf("%s: the target's env lacks ROLE: %q", s.name, env)
	}
	httpc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return s.c.DialTCP(ctx, net.JoinHostPort(clusterIP, "80"))
		}}}
	framework.Eventually(t, 30*time.Second, func() error {
		resp, err := httpc.Get("http://echo/env/GREETING")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if strings.TrimSpace(string(body)) != "hi from "+ns {
			return fmt.Errorf("%s: GET through the agent: %d %q", s.name, resp.StatusCode, body)
		}
		return nil
	})
}

// agentPods lists the agent pods of the target pod that are not ending.
func agentPods(t *testing.T, ctx context.Context, ns, targetUID string) []corev1.Pod {
	t.Helper()
	pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{kube.LabelName: kube.AgentName, kube.LabelTargetPod: targetUID}.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			live = append(live, p)
		}
	}
	return live
}

// TestKubeAgentShared: sessions on one target pod share one agent pod.
// Two start at once (one creates the agent Job, the other joins it), a
// third joins the running agent later; each has its own token and works
// on its own; the agent stays while any session is left and goes after the
// last one; a token nobody added is refused; and a session started after
// the agent exited gets a new agent.
func TestKubeAgentShared(t *testing.T) {
	ns := cluster.Namespace(t, "shared")
	ctx := framework.Context(t, 4*time.Minute)
	_, svc := echoService(t, ns)
	target := framework.ToolboxPod("backend", "sleep")
	target.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "ROLE", Value: "backend-" + ns}}
	cluster.RunPod(t, ns, target)

	client := kubeClient(t, ns)
	tg, err := client.Resolve(ctx, config.TargetPath{Kind: config.TargetPod, Name: "backend"}, "")
	if err != nil {
		t.Fatal(err)
	}
	user, err := client.Username(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := agentConfig(t)
	start := func(s *sharedSession) error {
		var progress progressLog
		began := time.Now()
		a, err := client.StartAgent(ctx, kube.AgentOptions{Target: tg, Config: cfg,
			TokenHash: protocol.HashToken(s.token), User: user, Progress: progress.add})
		if err != nil {
			return fmt.Errorf("%s: StartAgent: %v (progress: %s)", s.name, err, progress.String())
		}
		s.agent = a
		s.c, err = a.Connect(ctx, protocol.Hello{SessionID: s.name + "-" + ns, Token: s.token, Client: protocol.ClientInfo{User: s.name}})
		if err != nil {
			return fmt.Errorf("%s: Connect: %v (progress: %s)", s.name, err, progress.String())
		}
		t.Logf("%s: connected to %s (joined %v) in %s: %s", s.name, a.Pod, a.Joined,
			time.Since(began).Round(time.Millisecond), progress.String())
		return nil
	}

	// Two sessions start at once.
	first := &sharedSession{name: "first", token: protocol.NewToken()}
	second := &sharedSession{name: "second", token: protocol.NewToken()}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*sharedSession{first, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = start(s)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	defer first.c.Close()
	defer second.c.Close()
	if first.agent.Pod != second.agent.Pod || first.agent.Joined == second.agent.Joined {
		t.Fatalf("two agents or no join: first %s (joined %v), second %s (joined %v)",
			first.agent.Pod, first.agent.Joined, second.agent.Pod, second.agent.Joined)
	}
	agentPod := first.agent.Pod
	if pods := agentPods(t, ctx, ns, tg.PodUID); len(pods) != 1 || pods[0].Name != agentPod {
		t.Fatalf("agent pods of the target: %d, want only %s", len(pods), agentPod)
	}
	jobs, err := cluster.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelName + "=" + kube.AgentName})
	if err != nil || len(jobs.Items) != 1 || jobs.Items[0].Name != kube.AgentJobName(tg.PodUID) || first.agent.Job != jobs.Items[0].Name {
		t.Fatalf("agent jobs %v (%v), want only %s", jobs.Items, err, kube.AgentJobName(tg.PodUID))
	}
	// The pod carries hashes only.
	pod, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, agentPod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	joiner := first
	if second.agent.Joined {
		joiner = second
	}
	if h := protocol.HashToken(joiner.token); pod.Annotations[h.Annotation()] != h.String() {
		t.Errorf("the joiner's hash is not on the agent pod: %v", pod.Annotations)
	}
	for k, v := range pod.Annotations {
		if strings.Contains(k+v, first.token) || strings.Contains(k+v, second.token) {
			t.Errorf("a token is on the agent pod: %s=%s", k, v)
		}
	}

	checkSession(t, ctx, first, ns, svc.Spec.ClusterIP)
	checkSession(t, ctx, second, ns, svc.Spec.ClusterIP)

	// A token no session added is refused; a session of another token
	// cannot be taken over.
	refuse := func(h protocol.Hello, want error) {
		t.Helper()
		conn, err := first.agent.Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := protocol.Dial(ctx, conn, h); !errors.Is(err, want) {
			if c != nil {
				c.Close()
			}
			t.Errorf("hello %s (resume %v): %v, want %v", h.SessionID, h.Resume, err, want)
		}
	}
	refuse(protocol.Hello{SessionID: "intruder", Token: protocol.NewToken()}, protocol.ErrUnauthorized)
	refuse(protocol.Hello{SessionID: first.name + "-" + ns, Token: second.token, Resume: true}, protocol.ErrSessionInUse)

	// A third session joins the running agent.
	third := &sharedSession{name: "third", token: protocol.NewToken()}
	if err := start(third); err != nil {
		t.Fatal(err)
	}
	if !third.agent.Joined || third.agent.Pod != agentPod {
		t.Errorf("third session: pod %s joined %v, want to join %s", third.agent.Pod, third.agent.Joined, agentPod)
	}
	checkSession(t, ctx, third, ns, svc.Spec.ClusterIP)
	third.c.Close()

	// The first session ends: the agent stays for the second, past its
	// idle window (2 s).
	first.c.Close()
	time.Sleep(time.Duration(cfg.CommunicationTimeout)*time.Second + 2*time.Second)
	if pods := agentPods(t, ctx, ns, tg.PodUID); len(pods) != 1 || pods[0].Name != agentPod {
		t.Fatalf("after the first session ended: agent pods %d", len(pods))
	}
	checkSession(t, ctx, second, ns, svc.Spec.ClusterIP)

	// The last session ends: the agent exits after its idle window and the
	// Job's TTL removes its pod.
	second.c.Close()
	ended := time.Now()
	framework.Eventually(t, 30*time.Second, func() error {
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, agentPod, metav1.GetOptions{})
		if err == nil {
			return fmt.Errorf("agent pod %s still there (phase %s)", agentPod, p.Status.Phase)
		}
		return nil
	})
	t.Logf("agent pod gone %s after the last session ended", time.Since(ended).Round(time.Millisecond))

	// A later session gets a new agent.
	fourth := &sharedSession{name: "fourth", token: protocol.NewToken()}
	if err := start(fourth); err != nil {
		t.Fatal(err)
	}
	defer fourth.c.Close()
	if fourth.agent.Joined || fourth.agent.Pod == agentPod {
		t.Errorf("fourth session: pod %s joined %v, want a new agent", fourth.agent.Pod, fourth.agent.Joined)
	}
	checkSession(t, ctx, fourth, ns, svc.Spec.ClusterIP)
}

// TestKubeAgentJoinAsItExits: a session that starts while the target's
// agent is exiting (its last session gone, idle window over) must not
// join it, but gets a working agent.
func TestKubeAgentJoinAsItExits(t *testing.T) {
	ns := cluster.Namespace(t, "sharedexit")
	ctx := framework.Context(t, 3*time.Minute)
	target := framework.ToolboxPod("backend", "sleep")
	target.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "ROLE", Value: "backend-" + ns}}
	cluster.RunPod(t, ns, target)
	client := kubeClient(t, ns)
	tg, err := client.Resolve(ctx, config.TargetPath{Kind: config.TargetPod, Name: "backend"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := agentConfig(t)
	connect := func(name string) (*kube.Agent, *protocol.Client) {
		token := protocol.NewToken()
		var progress progressLog
		a, err := client.StartAgent(ctx, kube.AgentOptions{Target: tg, Config: cfg, TokenHash: protocol.HashToken(token), Progress: progress.add})
		if err != nil {
			t.Fatalf("%s: %v (progress: %s)", name, err, progress.String())
		}
		c, err := a.Connect(ctx, protocol.Hello{SessionID: name, Token: token})
		if err != nil {
			t.Fatalf("%s: %v (progress: %s)", name, err, progress.String())
		}
		t.Logf("%s: connected to %s (joined %v): %s", name, a.Pod, a.Joined, progress.String())
		return a, c
	}
	a1, c1 := connect("one")
	old := a1.Pod
	c1.Close()
	// Wait until the agent has decided to exit (its container ends), then
	// start a session right away: the old Job is still there.
	framework.Eventually(t, 30*time.Second, func() error {
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, old, metav1.GetOptions{})
		if err != nil {
			return nil // gone already
		}
		for _, st := range p.Status.ContainerStatuses {
			if st.State.Terminated != nil {
				return nil
			}
		}
		if p.DeletionTimestamp != nil {
			return nil
		}
		return fmt.Errorf("agent %s still running", old)
	})
	a2, c2 := connect("two")
	defer c2.Close()
	if a2.Pod == old || a2.Joined {
		t.Errorf("joined the exiting agent %s (now %s, joined %v)", old, a2.Pod, a2.Joined)
	}
	env, err := c2.Env(ctx)
	if err != nil || !slices.Contains(env, "ROLE=backend-"+ns) {
		t.Errorf("env %q, %v", env, err)
	}
}
