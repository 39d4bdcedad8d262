package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
)

// Ephemeral agents listen on the target pod's loopback, which the target's
// own servers share: the port is drawn from a range that is neither a
// usual server port nor in Linux's default ephemeral range (32768-60999),
// and a start that finds it taken is retried on another.
const (
	ephemeralPortMin = 20000
	ephemeralPortMax = 29999
)

// EphemeralContainer builds the agent's ephemeral container for the target
// pod (exported for tests). It shares the target container's process
// namespace (targetContainerName), so the agent finds the target's
// processes without hostPID, and the pod's network namespace, where it
// listens on port. Ephemeral containers take no resources, volumes or
// labels: such settings are ignored (the config warns).
func EphemeralContainer(opts AgentOptions, name string, port int) corev1.EphemeralContainer {
	t, cfg := opts.Target, opts.Config
	image := cfg.Image
	if image == "" {
		image = DefaultImage()
	}
	args := []string{"serve",
		"--listen", "127.0.0.1:" + strconv.Itoa(port),
		"--token-sha256", opts.TokenHash.String(),
		"--target-container-id", t.ContainerID,
	}
	if opts.LogLevel != "" {
		args = append(args, "--log-level", opts.LogLevel)
	}
	if s := cfg.StartupTimeoutDuration(); s > 0 {
		args = append(args, "--startup-timeout", s.String())
	}
	if s := cfg.CommunicationTimeoutDuration(); s > 0 {
		args = append(args, "--idle-timeout", s.String())
	}
	sc := &corev1.SecurityContext{
		Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"}},
		// The target may run as another user; the agent reads its /proc.
		RunAsUser:    ptrTo(int64(0)),
		RunAsNonRoot: ptrTo(false),
	}
	if cfg.Privileged {
		sc.Privileged = ptrTo(true)
	}
	return corev1.EphemeralContainer{
		TargetContainerName: t.Container,
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name:                     name,
			Image:                    image,
			ImagePullPolicy:          corev1.PullPolicy(cfg.ImagePullPolicy),
			Args:                     args,
			Env:                      agentEnv(),
			SecurityContext:          sc,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		},
	}
}

// startEphemeralAgent adds an agent container to the target pod and waits
// until it runs. Each session gets its own (an ephemeral container can't
// mount the token file joining sessions need). The container can't be
// removed from the pod afterwards — Kubernetes keeps ephemeral containers
// in the pod's spec — but the agent exits when its session ends, leaving
// only a terminated entry in the pod's status.
func (c *Client) startEphemeralAgent(ctx context.Context, opts AgentOptions, step func(string)) (*Agent, error) {
	t := opts.Target
	timeout := opts.Config.StartupTimeoutDuration()
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		name := AgentName + "-" + utilrand.String(5)
		port := ephemeralPortMin + rand.IntN(ephemeralPortMax-ephemeralPortMin+1)
		ec := EphemeralContainer(opts, name, port)
		patch, err := json.Marshal(map[string]any{"spec": map[string]any{"ephemeralContainers": []corev1.EphemeralContainer{ec}}})
		if err != nil {
			return nil, err
		}
		step("adding the agent container to pod " + t.Pod)
		_, err = c.Clientset.CoreV1().Pods(t.Namespace).Patch(ctx, t.Pod, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "ephemeralcontainers")
		if err != nil {
			return nil, ephemeralPatchError(err, t)
		}
		a := &Agent{Namespace: t.Namespace, Pod: t.Pod, PodUID: t.PodUID, Node: t.Node, Port: port,
			Image: ec.Image, Container: name, client: c, opts: opts, step: step}
		err = c.waitEphemeral(ctx, a, timeout)
		if err == nil {
			step("agent running")
			return a, nil
		}
		if attempt < 2 && strings.Contains(err.Error(), "address already in use") {
			step(fmt.Sprintf("port %d is taken in the target pod: trying another", port))
			continue
		}
		return nil, err
	}
}

func ephemeralPatchError(err error, t *Target) error {
	if isPodSecurity(err.Error()) {
		return errorf(ReasonPodSecurity, err, "%s", podSecurityMessage(err.Error(), t.Namespace))
	}
	if apierrors.IsNotFound(err) {
		return errorf(ReasonNotFound, err, "the target pod %s/%s is gone; run again to pick its replacement", t.Namespace, t.Pod)
	}
	return explain(err, "patch", "pods/ephemeralcontainers", t.Namespace)
}

// waitEphemeral follows the agent container's status in the target pod.
func (c *Client) waitEphemeral(ctx context.Context, a *Agent, timeout time.Duration) error {
	pods := c.Clientset.CoreV1().Pods(a.Namespace)
	for {
		pod, err := pods.Get(ctx, a.Pod, metav1.GetOptions{})
		cancelled := startCancelled(ctx)
		switch {
		case cancelled != nil:
			return cancelled
		case ctx.Err() != nil:
			return errorf(ReasonTimeout, nil, "the agent container %s did not start in pod %s/%s within %s (agent.startup_timeout); `kubectl describe pod %s -n %s` shows why",
				a.Container, a.Namespace, a.Pod, timeout, a.Pod, a.Namespace)
		case err != nil:
			return explain(err, "get", "pods", a.Namespace)
		}
		done, err := ephemeralState(pod, a.Container, a.Image, a.step)
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ephemeralState reports whether the named ephemeral container runs, or
// why it never will.
func ephemeralState(pod *corev1.Pod, name, image string, step func(string)) (bool, error) {
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false, errorf(ReasonNotReady, nil, "the target pod %s is ending (%s); run again to pick its replacement", pod.Name, pod.Status.Phase)
	}
	for _, st := range pod.Status.EphemeralContainerStatuses {
		if st.Name != name {
			continue
		}
		switch {
		case st.State.Running != nil:
			return true, nil
		case st.State.Terminated != nil:
			return false, errorf(ReasonAgentFailed, nil, "the agent container %s exited (%s, code %d): %s",
				name, st.State.Terminated.Reason, st.State.Terminated.ExitCode, strings.TrimSpace(st.State.Terminated.Message))
		case st.State.Waiting != nil:
			if err := waitingError(st.State.Waiting, pod.Spec.NodeName, image); err != nil {
				return false, err
			}
		}
		step("starting the agent container")
		return false, nil
	}
	step("waiting for the kubelet to start the agent container")
	return false, nil
}

// ephemeralEnding reports whether the agent container of a has stopped.
func ephemeralEnding(pod *corev1.Pod, name string) bool {
	for _, st := range pod.Status.EphemeralContainerStatuses {
		if st.Name == name {
			return st.State.Terminated != nil
		}
	}
	return false
}
