// Package framework holds what the end-to-end suites share: a client for the
// cluster KUBECONFIG names, throw-away namespaces, pods built from the test
// images, exec, port-forward and manifest apply. It talks to the cluster only
// through client-go, as doppel itself does.
package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
)

// ToolboxImage is the test image holding test/apps/toolbox as /toolbox.
const ToolboxImage = "doppel.local/toolbox:dev"

// Cluster is a connection to the cluster under test.
type Cluster struct {
	Config *rest.Config
	Client kubernetes.Interface
}

// Connect returns a client for the cluster KUBECONFIG names. The Makefile
// points KUBECONFIG at the local cluster unless DOPPEL_USE_EXISTING_CLUSTER=1.
func Connect() (*Cluster, error) {
	path := os.Getenv("KUBECONFIG")
	if path == "" {
		return nil, errors.New("KUBECONFIG is not set: run the suites through `make test`, or export the line `make cluster` prints")
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: path}, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load KUBECONFIG %s: %w", path, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Cluster{Config: cfg, Client: client}, nil
}

// RepoRoot is the repository's top directory, found from this file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Context returns a context that ends with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Namespace creates a namespace for one test and deletes it afterwards.
func (c *Cluster) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("e2e-%s-%s", prefix, rand.String(5))
	ctx := Context(t, time.Minute)
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{"doppel.dev/e2e": "true"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		err := c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

// ToolboxPod is a pod running the toolbox image with args.
func ToolboxPod(name string, args ...string) *corev1.Pod {
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           ToolboxImage,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            args,
			}},
		},
	}
}

// RunPod creates pod in ns and waits until it is running and ready.
func (c *Cluster) RunPod(t testing.TB, ns string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx := Context(t, 2*time.Minute)
	created, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	ready, err := c.WaitPodReady(ctx, ns, created.Name)
	if err != nil {
		t.Fatalf("pod %s/%s: %v", ns, created.Name, err)
	}
	return ready
}

// WaitPodReady waits for the pod's Ready condition, failing early with the
// reason when a container cannot start.
func (c *Cluster) WaitPodReady(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pod = p
		for _, st := range p.Status.ContainerStatuses {
			if w := st.State.Waiting; w != nil && (w.Reason == "ErrImageNeverPull" || w.Reason == "CrashLoopBackOff" ||
				w.Reason == "ErrImagePull" || w.Reason == "CreateContainerConfigError") {
				return false, fmt.Errorf("container %s: %s: %s", st.Name, w.Reason, w.Message)
			}
		}
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			return false, fmt.Errorf("pod ended: %s", p.Status.Phase)
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil && pod != nil {
		return nil, fmt.Errorf("%w (phase %s, conditions %v)", err, pod.Status.Phase, pod.Status.Conditions)
	}
	return pod, err
}

// WaitServiceReachable waits until kube-proxy carries the Service: each TCP
// port of its ClusterIP accepts a connection from this machine, and each UDP
// port answers a datagram (its server must echo). A Service is usable from a
// pod only after kube-proxy's next sync, which a fast client can beat.
func (c *Cluster) WaitServiceReachable(t testing.TB, svc *corev1.Service) {
	t.Helper()
	for _, port := range svc.Spec.Ports {
		addr := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(port.Port)))
		Eventually(t, 30*time.Second, func() error {
			if port.Protocol != corev1.ProtocolUDP {
				conn, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					conn.Close()
				}
				return err
			}
			conn, err := net.Dial("udp", addr)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(time.Second))
			if _, err := conn.Write([]byte("ping")); err != nil {
				return err
			}
			_, err = conn.Read(make([]byte, 64))
			return err
		})
	}
}

// Exec runs cmd in a container and returns its stdout and stderr.
func (c *Cluster) Exec(ctx context.Context, ns, pod, container string, cmd ...string) (string, string, error) {
	req := c.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdout: true, Stderr: true},
			scheme.ParameterCodec)
	spdyExec, err := remotecommand.NewSPDYExecutor(c.Config, "POST", req.URL())
	if err != nil {
		return "", "", err
	}
	wsExec, err := remotecommand.NewWebSocketExecutor(c.Config, "GET", req.URL().String())
	if err != nil {
		return "", "", err
	}
	// Fall back to SPDY only when the WebSocket upgrade itself failed, as
	// kubectl does: any other error means the command ran, and running it
	// again would run it twice.
	exec, err := remotecommand.NewFallbackExecutor(wsExec, spdyExec, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return "", "", err
	}
	var stdout, stderr bytes.Buffer
	err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	return stdout.String(), stderr.String(), err
}

// MustExec is Exec that fails the test on error.
func (c *Cluster) MustExec(t testing.TB, ns, pod, container string, cmd ...string) string {
	t.Helper()
	stdout, stderr, err := c.Exec(Context(t, time.Minute), ns, pod, container, cmd...)
	if err != nil {
		t.Fatalf("exec %v in %s/%s: %v\nstdout: %s\nstderr: %s", cmd, ns, pod, err, stdout, stderr)
	}
	return stdout
}

// PortForward forwards a loopback port to a pod port for the rest of the
// test and returns the local address.
func (c *Cluster) PortForward(t testing.TB, ns, pod string, port int) string {
	t.Helper()
	u := c.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u)
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)},
		stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	t.Cleanup(func() { close(stop) })
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("port-forward to %s/%s:%d: %v", ns, pod, port, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("port-forward to %s/%s:%d not ready after 30s", ns, pod, port)
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		t.Fatalf("port-forward ports: %v %v", ports, err)
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(ports[0].Local))
}

// HTTPGet fetches a URL on a forwarded address and returns status and body.
func HTTPGet(t testing.TB, rawURL string) (int, string) {
	t.Helper()
	return HTTPDo(t, http.MethodGet, rawURL, nil)
}

// HTTPDo sends a request with an optional form body.
func HTTPDo(t testing.TB, method, rawURL string, form url.Values) (int, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(Context(t, 30*time.Second), method, rawURL, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Eventually retries f until it succeeds or the timeout passes, then fails
// the test with f's last error.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
