//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// The agent's two modes (a Job on the target's node, an ephemeral container
// in the target pod) and targetless runs, through `doppel exec`.

// modeScript prints what the local process sees of the cluster.
var modeScript = strings.Join([]string{
	`echo "env=$ROLE"`,
	`echo "sa-namespace=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"`,
	`echo "service=$(curl -s --max-time 10 http://echo/env/GREETING)"`,
}, "\n")

func parseLines(out string) map[string]string {
	got := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	return got
}

func TestExecEphemeralAgent(t *testing.T) {
	ns := cluster.Namespace(t, "ephemeral-agent")
	ctx := framework.Context(t, 3*time.Minute)
	echoService(t, ns)
	target := framework.ToolboxPod("target", "sleep")
	target.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "ROLE", Value: "target-" + ns}}
	target = cluster.RunPod(t, ns, target)

	config := execConfig(t, ns, "pod/target") + "  ephemeral: true\n  communication_timeout: 2\n"
	stdout, stderr, err := doppelExec(t, config, "bash", "-c", modeScript)
	if err != nil {
		t.Fatalf("doppel exec: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	got := parseLines(stdout)
	for k, v := range map[string]string{"env": "target-" + ns, "sa-namespace": ns, "service": "hi from " + ns} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q\nstderr:\n%s", k, got[k], v, stderr)
		}
	}
	if !strings.Contains(stderr, "adding the agent container to pod target") {
		t.Errorf("no progress about the ephemeral container:\n%s", stderr)
	}

	// No Job: the agent lived in the target pod, and it is done once the
	// session ended.
	jobs, err := cluster.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(jobs.Items) != 0 {
		t.Errorf("an ephemeral agent created jobs: %v %v", jobs, err)
	}
	framework.Eventually(t, 30*time.Second, func() error {
		pod, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, "target", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(pod.Status.EphemeralContainerStatuses) != 1 {
			return errorString("ephemeral containers: " + pod.Status.String())
		}
		st := pod.Status.EphemeralContainerStatuses[0]
		if !strings.HasPrefix(st.Name, "doppel-agent-") || st.State.Terminated == nil {
			return errorString("the agent container still runs: " + st.String())
		}
		if st.State.Terminated.ExitCode != 0 {
			t.Errorf("the agent container exited with %d: %s", st.State.Terminated.ExitCode, st.State.Terminated.Message)
		}
		return nil
	})
	after, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, "target", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.UID != target.UID || after.Status.ContainerStatuses[0].RestartCount != 0 || after.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("the target pod was disturbed: %s", after.Status.String())
	}
}

func TestExecTargetless(t *testing.T) {
	ns := cluster.Namespace(t, "targetless")
	ctx := framework.Context(t, 3*time.Minute)
	echoService(t, ns)
	config := strings.Replace(execConfig(t, ns, "targetless"), "agent:\n", "agent:\n  communication_timeout: 2\n", 1)
	stdout, stderr, err := doppelExec(t, config, "bash", "-c", modeScript)
	if err != nil {
		t.Fatalf("doppel exec: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	got := parseLines(stdout)
	// Outgoing traffic and DNS come from the agent's pod in ns; there is no
	// target env, and files stay local.
	if got["service"] != "hi from "+ns {
		t.Errorf("service = %q, want the echo Service's answer\nstderr:\n%s", got["service"], stderr)
	}
	if got["env"] != "" {
		t.Errorf("env ROLE = %q in a targetless run", got["env"])
	}
	framework.Eventually(t, 30*time.Second, func() error {
		pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=doppel-agent"})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return errorString("the targetless agent pod " + pods.Items[0].Name + " is still there")
		}
		return nil
	})
}

type errorString string

func (e errorString) Error() string { return string(e) }
