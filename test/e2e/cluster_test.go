//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// The cluster itself: what doppel relies on the cluster for.

func TestNodeReady(t *testing.T) {
	nodes, err := cluster.Client.CoreV1().Nodes().List(framework.Context(t, time.Minute), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) == 0 {
		t.Fatal("no nodes")
	}
	for _, n := range nodes.Items {
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			t.Errorf("node %s is not Ready: %v", n.Name, n.Status.Conditions)
		}
	}
}

// echoService runs a toolbox HTTP server pod with a Service in front of it.
func echoService(t *testing.T, ns string) (*corev1.Pod, *corev1.Service) {
	t.Helper()
	pod := framework.ToolboxPod("echo", "serve", "-port", "8080")
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "GREETING", Value: "hi from " + ns}}
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt(8080)}},
		PeriodSeconds: 1,
	}
	pod = cluster.RunPod(t, ns, pod)
	svc, err := cluster.Client.CoreV1().Services(ns).Create(framework.Context(t, time.Minute), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "echo"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cluster.WaitServiceReachable(t, svc)
	return pod, svc
}

func TestServiceDNSAndTraffic(t *testing.T) {
	ns := cluster.Namespace(t, "dns")
	server, svc := echoService(t, ns)
	client := cluster.RunPod(t, ns, framework.ToolboxPod("client", "sleep"))

	for _, name := range []string{"echo", "echo." + ns, "echo." + ns + ".svc.cluster.local"} {
		t.Run("resolve "+name, func(t *testing.T) {
			framework.Eventually(t, 30*time.Second, func() error {
				out, stderr, err := cluster.Exec(framework.Context(t, 10*time.Second), ns, client.Name, "main", "/toolbox", "resolve", name)
				if err != nil {
					return fmt.Errorf("%v: %s", err, stderr)
				}
				if strings.TrimSpace(out) != svc.Spec.ClusterIP {
					return fmt.Errorf("%s resolved to %q, want the ClusterIP %s", name, out, svc.Spec.ClusterIP)
				}
				return nil
			})
		})
	}
	t.Run("unknown names stay unresolved", func(t *testing.T) {
		_, _, err := cluster.Exec(framework.Context(t, 20*time.Second), ns, client.Name, "main", "/toolbox", "resolve", "no-such-service")
		if err == nil {
			t.Fatal("an unknown name resolved")
		}
	})
	t.Run("pod to Service", func(t *testing.T) {
		for _, url := range []string{"http://echo/", "http://echo." + ns + ".svc.cluster.local/", "http://" + svc.Spec.ClusterIP + "/"} {
			framework.Eventually(t, 30*time.Second, func() error {
				out, stderr, err := cluster.Exec(framework.Context(t, 10*time.Second), ns, client.Name, "main", "/toolbox", "get", url)
				if err != nil {
					return fmt.Errorf("GET %s: %v: %s", url, err, stderr)
				}
				if !strings.Contains(out, "hello from "+server.Name) {
					return fmt.Errorf("GET %s = %q, want the echo pod's greeting", url, out)
				}
				return nil
			})
		}
	})
	t.Run("pod to pod IP", func(t *testing.T) {
		out := cluster.MustExec(t, ns, client.Name, "main", "/toolbox", "get", "http://"+server.Status.PodIP+":8080/env/GREETING")
		if strings.TrimSpace(out) != "hi from "+ns {
			t.Fatalf("got %q", out)
		}
	})
}

func TestPortForward(t *testing.T) {
	ns := cluster.Namespace(t, "pf")
	server, _ := echoService(t, ns)
	addr := cluster.PortForward(t, ns, server.Name, 8080)
	code, body := framework.HTTPGet(t, "http://"+addr+"/env/GREETING")
	if code != 200 || strings.TrimSpace(body) != "hi from "+ns {
		t.Fatalf("through port-forward: %d %q", code, body)
	}
}

func TestExecAndLogs(t *testing.T) {
	ns := cluster.Namespace(t, "exec")
	server, _ := echoService(t, ns)
	out := cluster.MustExec(t, ns, server.Name, "main", "/toolbox", "get", "http://127.0.0.1:8080/env/GREETING")
	if strings.TrimSpace(out) != "hi from "+ns {
		t.Fatalf("exec output %q", out)
	}
	_, _, err := cluster.Exec(framework.Context(t, 20*time.Second), ns, server.Name, "main", "/toolbox", "get", "http://127.0.0.1:1/")
	if err == nil {
		t.Fatal("a failing command's exit status was lost through exec")
	}
	framework.Eventually(t, 20*time.Second, func() error {
		logs, err := cluster.Client.CoreV1().Pods(ns).GetLogs(server.Name, &corev1.PodLogOptions{}).DoRaw(framework.Context(t, 10*time.Second))
		if err != nil {
			return err
		}
		if !strings.Contains(string(logs), "/env/GREETING") {
			return fmt.Errorf("logs lack the request: %q", logs)
		}
		return nil
	})
}

func TestEphemeralContainer(t *testing.T) {
	ns := cluster.Namespace(t, "ephemeral")
	server, _ := echoService(t, ns)
	ctx := framework.Context(t, 2*time.Minute)
	pod, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, server.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, corev1.EphemeralContainer{
		TargetContainerName: "main",
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: "debugger", Image: framework.ToolboxImage, ImagePullPolicy: corev1.PullIfNotPresent,
			Args: []string{"sleep"},
		},
	})
	if _, err := cluster.Client.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, pod.Name, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, st := range p.Status.EphemeralContainerStatuses {
			if st.Name == "debugger" && st.State.Running != nil {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("ephemeral container not running: %v", err)
	}
	// It shares the pod's network namespace: the app answers on loopback.
	out := cluster.MustExec(t, ns, pod.Name, "debugger", "/toolbox", "get", "http://127.0.0.1:8080/env/GREETING")
	if strings.TrimSpace(out) != "hi from "+ns {
		t.Fatalf("from the ephemeral container: %q", out)
	}
}

// TestPrivilegedHostPID checks what the agent needs: a privileged hostPID pod
// sees another pod's processes, their env and their root file system.
func TestPrivilegedHostPID(t *testing.T) {
	ns := cluster.Namespace(t, "hostpid")
	marker := "marker-" + ns
	target := framework.ToolboxPod("target", "serve", "-port", "8080")
	target.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "DOPPEL_MARKER", Value: marker}}
	target = cluster.RunPod(t, ns, target)

	spy := framework.ToolboxPod("spy", "sleep")
	spy.Spec.HostPID = true
	privileged := true
	spy.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &privileged}
	spy = cluster.RunPod(t, ns, spy)

	ps := cluster.MustExec(t, ns, spy.Name, "main", "/toolbox", "ps")
	found := false
	for _, line := range strings.Split(ps, "\n") {
		pid, cmd, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || !strings.Contains(cmd, "/toolbox serve") {
			continue
		}
		environ, _, err := cluster.Exec(framework.Context(t, 10*time.Second), ns, spy.Name, "main", "/toolbox", "cat", "/proc/"+pid+"/environ")
		if err != nil || !strings.Contains(environ, "DOPPEL_MARKER="+marker) {
			continue
		}
		found = true
		// The target's root file system is readable under /proc/PID/root.
		root := cluster.MustExec(t, ns, spy.Name, "main", "/toolbox", "cat", "/proc/"+pid+"/root/etc/hostname")
		if strings.TrimSpace(root) != target.Name {
			t.Errorf("/proc/%s/root/etc/hostname = %q, want %q", pid, root, target.Name)
		}
	}
	if !found {
		t.Fatalf("the hostPID pod does not see the target's process with its env; ps:\n%s", ps)
	}
}
