//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/helper/kube"
	"github.com/doppel-dev/doppel/protocol"
	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// agentImage is the image `make image` imported: DOPPEL_AGENT_IMAGE, else
// the tag the Makefile derives from git.
func agentImage(t *testing.T) string {
	t.Helper()
	if img := os.Getenv("DOPPEL_AGENT_IMAGE"); img != "" {
		return img
	}
	cmd := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	cmd.Dir = framework.RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git describe (set DOPPEL_AGENT_IMAGE instead): %v", err)
	}
	return "doppel-agent:" + strings.TrimSpace(string(out))
}

// agentConfig is the config's agent section with the test image and short
// windows, so the agent's exit is quick to observe.
func agentConfig(t *testing.T) config.AgentConfig {
	cfg := config.Default().Agent
	cfg.Image = agentImage(t)
	cfg.ImagePullPolicy = config.PullNever
	cfg.CommunicationTimeout = 2
	cfg.StartupTimeout = 30
	return cfg
}

// progressLog collects progress steps for the test log.
type progressLog struct {
	mu    sync.Mutex
	steps []string
}

func (p *progressLog) add(s kube.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.steps = append(p.steps, s.String())
}

func (p *progressLog) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.steps, " → ")
}

func TestKubeAgentSession(t *testing.T) {
	ns := cluster.Namespace(t, "agent")
	ctx := framework.Context(t, 3*time.Minute)
	_, svc := echoService(t, ns)
	_, err := cluster.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		StringData: map[string]string{"password": "s3cret-" + ns},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	target := framework.ToolboxPod("backend", "sleep")
	target.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}}}
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
	token := protocol.NewToken()
	var progress progressLog
	started := time.Now()
	agent, err := client.StartAgent(ctx, kube.AgentOptions{
		Target: tg, Config: agentConfig(t), TokenHash: protocol.HashToken(token), User: user, Progress: progress.add,
	})
	if err != nil {
		t.Fatalf("%v (progress: %s)", err, progress.String())
	}
	t.Logf("agent %s/%s on %s started in %s: %s", agent.Namespace, agent.Pod, agent.Node, time.Since(started).Round(time.Millisecond), progress.String())
	if agent.Node != tg.Node {
		t.Errorf("agent on node %s, target on %s", agent.Node, tg.Node)
	}
	job, err := cluster.Client.BatchV1().Jobs(ns).Get(ctx, agent.Job, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if job.Labels[kube.LabelTargetPod] != tg.PodUID || job.Labels[kube.LabelUser] != kube.UserLabel(user) {
		t.Errorf("job labels %v", job.Labels)
	}
	if args := strings.Join(job.Spec.Template.Spec.Containers[0].Args, " "); strings.Contains(args, token) ||
		!strings.Contains(args, protocol.HashToken(token).String()) {
		t.Errorf("the pod spec must carry the token's hash only: %s", args)
	}

	hello := protocol.Hello{SessionID: "e2e-" + ns, Token: token, Client: protocol.ClientInfo{User: "e2e"}}
	sess, err := agent.Connect(ctx, hello)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("session connected %s after start", time.Since(started).Round(time.Millisecond))

	env, err := sess.Env(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(env, "DB_PASSWORD=s3cret-"+ns) {
		t.Errorf("the target's env lacks the Secret's value: %q", env)
	}
	if h, err := sess.Hostname(ctx); err != nil || h != "backend" {
		t.Errorf("hostname %q, %v", h, err)
	}

	// An HTTP request to the ClusterIP Service, dialed from the target pod.
	httpc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return sess.DialTCP(ctx, net.JoinHostPort(svc.Spec.ClusterIP, "80"))
	}}}
	framework.Eventually(t, 30*time.Second, func() error {
		resp, err := httpc.Get("http://echo/env/GREETING")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if strings.TrimSpace(string(body)) != "hi from "+ns {
			return fmt.Errorf("GET through the agent: %d %q", resp.StatusCode, body)
		}
		return nil
	})

	// A dropped port-forward is replaced by dialing again and resuming.
	conn, err := agent.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sess.Close()
	conn.Close()

	// Once the session is gone the agent exits after its idle window (2s),
	// the Job finishes and its TTL (1s) removes the Job and the pod.
	ended := time.Now()
	framework.Eventually(t, 30*time.Second, func() error {
		pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + agent.Job})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("agent pod %s still there (phase %s)", pods.Items[0].Name, pods.Items[0].Status.Phase)
		}
		return nil
	})
	t.Logf("agent pod gone %s after the session ended", time.Since(ended).Round(time.Millisecond))
}

func TestKubeAgentImagePullFailure(t *testing.T) {
	ns := cluster.Namespace(t, "agentpull")
	cluster.RunPod(t, ns, framework.ToolboxPod("backend", "sleep"))
	client := kubeClient(t, ns)
	ctx := framework.Context(t, time.Minute)
	tg, err := client.Resolve(ctx, config.TargetPath{Kind: config.TargetPod, Name: "backend"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := agentConfig(t)
	cfg.Image = "doppel-agent:does-not-exist"
	// With the session's hello StartAgent also greets the agent while it
	// starts (dials that fail: nothing listens); the dead end is the same.
	token := protocol.NewToken()
	for _, hello := range []*protocol.Hello{nil, {SessionID: "pull", Token: token}} {
		started := time.Now()
		_, err = client.StartAgent(ctx, kube.AgentOptions{Target: tg, Config: cfg, TokenHash: protocol.HashToken(token), Hello: hello})
		took := time.Since(started)
		if kube.ReasonOf(err) != kube.ReasonImagePull {
			t.Fatalf("err = %v, want an image pull error (hello %v)", err, hello != nil)
		}
		for _, s := range []string{"doppel-agent:does-not-exist", "ErrImageNeverPull", "make image"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error does not say %q: %v", s, err)
			}
		}
		if took > 15*time.Second {
			t.Errorf("took %s to fail", took)
		}
		t.Logf("failed after %s (hello %v): %v", took.Round(time.Millisecond), hello != nil, err)
		// Nothing is left behind.
		framework.Eventually(t, 30*time.Second, func() error {
			jobs, err := cluster.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelName + "=" + kube.AgentName})
			if err != nil || len(jobs.Items) > 0 {
				return fmt.Errorf("agent jobs left: %d %v", len(jobs.Items), err)
			}
			return nil
		})
	}
}

func TestKubeAgentPodSecurity(t *testing.T) {
	ns := cluster.Namespace(t, "agentpsa")
	cluster.RunPod(t, ns, framework.ToolboxPod("backend", "sleep"))
	ctx := framework.Context(t, time.Minute)
	n, err := cluster.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels["pod-security.kubernetes.io/enforce"] = "baseline"
	if _, err := cluster.Client.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	client := kubeClient(t, ns)
	tg, err := client.Resolve(ctx, config.TargetPath{Kind: config.TargetPod, Name: "backend"}, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.StartAgent(ctx, kube.AgentOptions{Target: tg, Config: agentConfig(t), TokenHash: protocol.HashToken(protocol.NewToken())})
	if kube.ReasonOf(err) != kube.ReasonPodSecurity {
		t.Fatalf("err = %v, want a pod security error", err)
	}
	for _, s := range []string{`"baseline:latest"`, "hostPID", "privileged", "agent.namespace"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not say %q: %v", s, err)
		}
	}
}

// limitedConfig returns credentials of a ServiceAccount that may read pods
// and workloads in ns but not create Jobs.
func limitedConfig(t *testing.T, ns string) *rest.Config {
	t.Helper()
	ctx := framework.Context(t, time.Minute)
	cs := cluster.Client
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "limited"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "services", "namespaces"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{"apps", "batch"}, Resources: []string{"*"}, Verbs: []string{"get", "list"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "limited-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "limited", Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "limited", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(cluster.Config)
	cfg.BearerToken = tok.Status.Token
	return cfg
}

func TestKubeAgentRBACDenied(t *testing.T) {
	ns := cluster.Namespace(t, "agentrbac")
	cluster.RunPod(t, ns, framework.ToolboxPod("backend", "sleep"))
	client, err := kube.NewForConfig(limitedConfig(t, ns), ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx := framework.Context(t, time.Minute)
	user, err := client.Username(ctx)
	if err != nil || user != "system:serviceaccount:"+ns+":limited" {
		t.Fatalf("user %q, %v", user, err)
	}
	tg, err := client.Resolve(ctx, config.TargetPath{Kind: config.TargetPod, Name: "backend"}, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.StartAgent(ctx, kube.AgentOptions{Target: tg, Config: agentConfig(t), TokenHash: protocol.HashToken(protocol.NewToken()), User: user})
	if kube.ReasonOf(err) != kube.ReasonForbidden {
		t.Fatalf("err = %v, want an RBAC error", err)
	}
	want := fmt.Sprintf(`cannot create jobs.batch in namespace %s: ask for RBAC verb "create" on "jobs" (API group batch)`, ns)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q\ndoes not say %q", err, want)
	}
	// Listing what the account cannot list warns instead of failing.
	listing, err := client.List(ctx, kube.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(listing.Warnings) == 0 || !strings.Contains(strings.Join(listing.Warnings, "\n"), `"list"`) {
		t.Errorf("warnings %q", listing.Warnings)
	}
}
