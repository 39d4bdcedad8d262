//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// `doppel exec` through a real pod: the local process gets the target's env
// (from a Secret), files (a ConfigMap volume, the service-account token, its
// hostname), DNS (Service short names) and network (ClusterIP, pod IP, UDP).

// buildOnce returns a function that builds the main package pkg of this
// repository into a temporary directory as name, once per test binary.
func buildOnce(name, pkg string) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "doppel-e2e-"+name)
		if err != nil {
			return "", err
		}
		bin := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = framework.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
		return bin, nil
	})
}

var buildDoppel = buildOnce("doppel", "./helper")

// doppelProc is a `doppel` process started by a test.
type doppelProc struct {
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	done   chan error
}

// syncBuffer is a bytes.Buffer safe to read while the process writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// configDir is a working directory holding config as .doppel/config.yaml.
func configDir(t *testing.T, config string) string {
	t.Helper()
	wd := t.TempDir()
	if err := os.MkdirAll(filepath.Join(wd, ".doppel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wd, ".doppel", "config.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return wd
}

// startDoppel starts `doppel ARGS...` in wd with extra environment
// variables; the test's cleanup kills what is left of it (its process
// group: the local command included).
func startDoppel(t *testing.T, wd string, env []string, args ...string) *doppelProc {
	t.Helper()
	bin, err := buildDoppel()
	if err != nil {
		t.Fatal(err)
	}
	p := &doppelProc{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	p.cmd.Dir = wd
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := p.cmd.Process.Pid
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		// Only the group this test started.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
	return p
}

// wait waits for the process to exit, at most d.
func (p *doppelProc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("doppel %v did not finish in %s; stderr:\n%s", p.cmd.Args[1:], d, p.stderr.String())
		return nil
	}
}

// waitOutput waits until stdout contains s.
func (p *doppelProc) waitOutput(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.stdout.String(), s) {
		select {
		case err := <-p.done:
			p.done <- err
			if strings.Contains(p.stdout.String(), s) {
				return
			}
			t.Fatalf("doppel exited (%v) before printing %q\nstdout:\n%s\nstderr:\n%s", err, s, p.stdout.String(), p.stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q from doppel within %s\nstdout:\n%s\nstderr:\n%s", s, d, p.stdout.String(), p.stderr.String())
		}
	}
}

// doppelExec runs `doppel exec` in a working directory holding config, and
// returns stdout and stderr.
func doppelExec(t *testing.T, config string, args ...string) (string, string, error) {
	t.Helper()
	p := startDoppel(t, configDir(t, config), nil, append([]string{"exec", "--"}, args...)...)
	err := p.wait(t, 2*time.Minute)
	return p.stdout.String(), p.stderr.String(), err
}

// execConfig is a config targeting target in ns with the test's agent image.
func execConfig(t *testing.T, ns, target string) string {
	return fmt.Sprintf("target:\n  path: %s\n  namespace: %s\nagent:\n  image: %s\n  image_pull_policy: Never\n",
		target, ns, agentImage(t))
}

func TestExecThroughAPod(t *testing.T) {
	ns := cluster.Namespace(t, "exec")
	ctx := framework.Context(t, 3*time.Minute)
	secret := "s3cr3t-" + ns
	_, err := cluster.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "app"}, StringData: map[string]string{"password": secret},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cluster.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "app-config"}, Data: map[string]string{"greeting": "hello from a configmap", "mode": "staging"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	target := framework.ToolboxPod("target", "serve", "-port", "8080")
	c := &target.Spec.Containers[0]
	c.Env = []corev1.EnvVar{{Name: "APP_PASSWORD", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}, Key: "password"}}}}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app-config"}}
	target.Spec.Volumes = []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}}}
	target = cluster.RunPod(t, ns, target)

	echo, svc := echoService(t, ns)
	udp := framework.ToolboxPod("udp", "udp-echo", "-port", "9000")
	cluster.RunPod(t, ns, udp)
	udpSvc, err := cluster.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "udp-echo"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "udp"},
			Ports: []corev1.ServicePort{{Port: 9000, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt(9000)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cluster.WaitServiceReachable(t, udpSvc)

	script := strings.Join([]string{
		`echo "env=$APP_PASSWORD"`,
		`echo "hostname=$(cat /etc/hostname)"`,
		`echo "configmap=$(cat /etc/app-config/greeting)"`,
		`echo "listing=$(ls /etc/app-config | tr '\n' ,)"`,
		`echo "sa-namespace=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"`,
		`echo "sa-token=$(head -c 3 /var/run/secrets/kubernetes.io/serviceaccount/token)"`,
		`echo "short-name=$(getent hosts echo | cut -d' ' -f1)"`,
		`echo "service=$(curl -s --max-time 10 http://echo/env/GREETING)"`,
		`echo "cluster-ip=$(curl -s --max-time 10 http://` + svc.Spec.ClusterIP + `/env/GREETING)"`,
		`echo "pod-ip=$(curl -s --max-time 10 http://` + echo.Status.PodIP + `:8080/env/GREETING)"`,
		`exec 3<>/dev/udp/udp-echo/9000; printf ping >&3; read -r -t 5 -N 4 reply <&3; echo "udp=$reply"`,
		`curl -s --max-time 10 http://` + echo.Status.PodIP + `:1/ >/dev/null; echo "refused=$?"`,
		`exit 3`,
	}, "\n")
	stdout, stderr, err := doppelExec(t, execConfig(t, ns, "pod/target"), "bash", "-c", script)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("doppel exec: %v (want exit status 3)\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	got := map[string]string{}
	for _, line := range strings.Split(stdout, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	want := map[string]string{
		"env":          secret,
		"hostname":     target.Name,
		"configmap":    "hello from a configmap",
		"listing":      "greeting,mode,",
		"sa-namespace": ns,
		"sa-token":     "eyJ", // a JWT
		"short-name":   svc.Spec.ClusterIP,
		"service":      "hi from " + ns,
		"cluster-ip":   "hi from " + ns,
		"pod-ip":       "hi from " + ns,
		"udp":          "ping",
		"refused":      "7", // curl: could not connect
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
}

// TestExecStagingBackendLocally is the demo's story: the staging backend
// runs locally with the pod's DB credentials and writes to the cluster's
// PostgreSQL, which the cluster's frontend then lists.
func TestExecStagingBackendLocally(t *testing.T) {
	deployStaging(t)
	id := fmt.Sprintf("local-%d", time.Now().UnixNano())
	backend, err := buildBackend()
	if err != nil {
		t.Fatal(err)
	}
	// The local backend listens on 8080 (rebound if taken locally); the
	// script talks to it by the port it reports.
	script := backend + ` & pid=$!
for i in $(seq 100); do curl -sf localhost:8080/ >/dev/null && break; sleep 0.1; done
curl -sf -X POST "localhost:8080/video?id=` + id + `&title=written+locally"
kill $pid`
	stdout, stderr, err := doppelExec(t, execConfig(t, "staging", "deployment/backend"), "bash", "-c", script)
	if err != nil || !strings.Contains(stdout, id) {
		t.Fatalf("local backend: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	frontend := "http://" + cluster.PortForward(t, "staging", podOf(t, "frontend"), 8080)
	code, body := framework.HTTPGet(t, frontend+"/videos")
	if code != 200 || !strings.Contains(body, id) {
		t.Fatalf("the cluster's frontend does not list the row the local backend wrote: %d\n%s", code, body)
	}
}
