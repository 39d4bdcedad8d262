package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/internal/buildinfo"
	"github.com/doppel-dev/doppel/protocol"
)

// Labels and annotations of agent Jobs and pods. They are what reuse and
// `doppel cleanup` select on.
const (
	AgentName = "doppel-agent"
	// LabelName is app.kubernetes.io/name=doppel-agent on every agent.
	LabelName = "app.kubernetes.io/name"
	// LabelTargetPod holds the target pod's UID: unique across namespaces
	// and short enough for a label value, unlike namespace/name.
	LabelTargetPod = "doppel.dev/target-pod"
	// LabelUser holds the creator's Kubernetes user name, made a valid
	// label value (AnnotationUser has it verbatim).
	LabelUser = "doppel.dev/user"
	// LabelSession holds the ID of the session that started the agent
	// (a shared agent serves later sessions too: its log names them).
	LabelSession = "doppel.dev/session"
	// AnnotationTarget is "NAMESPACE/POD/CONTAINER", for people.
	AnnotationTarget = "doppel.dev/target"
	AnnotationUser   = "doppel.dev/user"
	// AnnotationPort is the agent's listen port in its pod.
	AnnotationPort = "doppel.dev/port"
)

// AgentPort is the port the agent listens on, on the loopback of its own
// pod: nothing else shares that network namespace, so a fixed port is
// safe, and the API server's port-forward is the only way in.
const AgentPort = 7463

// AgentContainer is the agent's container name in its pod.
const AgentContainer = "agent"

// TokenFile is where the agent reads its pod's annotations (a downward API
// volume): sessions that join a running agent add their token's hash there
// as a protocol.TokenAnnotationPrefix annotation.
const TokenFile = "/doppel/annotations"

const tokenVolume = "doppel-annotations"

// AgentJobName is the name of the shared agent Job of a target pod: one
// name per pod, so that two sessions starting at once create one Job (the
// second gets AlreadyExists and joins it).
func AgentJobName(podUID string) string { return AgentName + "-" + podUID }

// DefaultImage is the agent image of this doppel build.
func DefaultImage() string { return "doppel-agent:" + buildinfo.Get().Version }

// AgentOptions describe the agent to start.
type AgentOptions struct {
	// Target is the resolved target; a targetless one gets an agent that
	// only lends its own pod's network and DNS.
	Target *Target
	// Config is the config's "agent" section (image, namespace, pull
	// policy, resources, tolerations, timeouts…).
	Config config.AgentConfig
	// TokenHash authorizes the session (protocol.HashToken of its token).
	TokenHash protocol.TokenHash
	// User labels the agent (Client.Username); cleanup selects on it.
	User string
	// Session labels the agent with the ID of the session starting it.
	Session string
	// Progress, if set, receives each step of the start, in order.
	Progress func(Progress)
	// Exclusive starts an agent for this session alone, with a generated
	// name and no token file: it neither joins a running agent nor can be
	// joined. Targetless agents are always exclusive.
	Exclusive bool
	// LogLevel is the agent's --log-level (the config's doppel.log_level);
	// empty leaves the agent's default. A shared agent keeps its creator's.
	LogLevel string
	// Hello, if set, is the session's hello: a new agent is then greeted
	// as soon as it listens, which is up to a second before the API
	// reports its container running (the kubelet's next relist), and
	// Connect returns that connection.
	Hello *protocol.Hello
}

// Progress is one step of starting an agent, for people.
type Progress struct {
	Step    string        `json:"step"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

func (p Progress) String() string {
	return fmt.Sprintf("%s (%.1fs)", p.Step, p.Elapsed.Seconds())
}

// Agent is a running agent a session can connect to.
type Agent struct {
	Namespace string
	Job       string // "" for an ephemeral agent
	// jobUID, when known, makes Delete remove that Job only, not one a
	// later session created under the same name.
	jobUID types.UID
	Pod    string // the agent's pod; the target pod for an ephemeral agent
	// Container is the ephemeral agent container's name ("" for a Job).
	Container string
	PodUID    string
	Node      string
	Port      int
	Image     string
	// Joined is true when the agent was already running for the target
	// pod (another session, maybe another user's, started it) and this
	// session added its token hash to it. Connect then retries
	// `unauthorized` while the kubelet refreshes the agent's token file,
	// and starts a new agent if the joined one turns out to be exiting.
	Joined bool

	client *Client
	opts   AgentOptions
	step   func(string)
	// early is the connection made while the agent started, for Connect.
	early *protocol.Client
}

// StartAgent makes an agent available next to the target and waits until
// it runs. One agent serves every session on a target pod: StartAgent
// first looks for a running agent of the target pod (label
// doppel.dev/target-pod, in agent.namespace or the target's namespace)
// with the same image and joins it, by adding this session's token hash
// to the agent pod's annotations (which needs `patch` on pods). Else it
// creates the agent Job, named after the target pod (AgentJobName), on the
// target's node; a session that loses the race to create it joins the
// winner's. It fails fast, with what to do, when the image cannot be
// pulled, the pod cannot be scheduled or is rejected by pod security
// admission, or RBAC forbids a step; a Job it created is then deleted.
// Connect (or Dial) reaches the agent afterwards.
func (c *Client) StartAgent(ctx context.Context, opts AgentOptions) (*Agent, error) {
	if opts.Target == nil {
		return nil, errors.New("kube: StartAgent needs a target")
	}
	start := time.Now()
	last := ""
	step := func(s string) {
		if s != last && opts.Progress != nil {
			opts.Progress(Progress{Step: s, Elapsed: time.Since(start)})
		}
		last = s
	}
	if opts.Config.Ephemeral {
		if opts.Target.Targetless() {
			return nil, errorf(ReasonUnsupported, nil, "an ephemeral agent needs a target pod: remove agent.ephemeral for a targetless run")
		}
		return c.startEphemeralAgent(ctx, opts, step)
	}
	return c.startAgent(ctx, opts, step, "")
}

// startAgent is StartAgent, never joining the agent pod whose UID is
// avoid (one found exiting).
func (c *Client) startAgent(ctx context.Context, opts AgentOptions, step func(string), avoid string) (*Agent, error) {
	job, err := AgentJob(opts)
	if err != nil {
		return nil, err
	}
	ns := job.Namespace
	image := job.Spec.Template.Spec.Containers[0].Image
	timeout := opts.Config.StartupTimeoutDuration()
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	newAgent := func() *Agent {
		return &Agent{Namespace: ns, Port: AgentPort, Image: image, client: c, opts: opts, step: step}
	}

	shared := job.Name != ""
	if shared {
		step("looking for a running agent")
		pod, err := c.findAgent(ctx, ns, opts.Target.PodUID, image, avoid)
		if err != nil {
			return nil, err
		}
		if pod != nil {
			a, err := c.joinAgent(ctx, newAgent(), pod, step)
			if !errors.Is(err, errAgentGone) {
				return a, err
			}
			avoid = string(pod.UID) // gone meanwhile: start one
		}
	}
	if err := c.checkPodSecurity(ctx, ns, opts.Target.Targetless()); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		step("creating agent job")
		created, err := c.Clientset.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
		if err == nil {
			a := newAgent()
			a.Job, a.jobUID = created.Name, created.UID
			pod, err := c.waitAgent(ctx, a, created, image, step, timeout)
			if err != nil {
				// A failed start leaves nothing behind.
				dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				_ = a.Delete(dctx)
				dcancel()
				return nil, err
			}
			a.Pod, a.PodUID, a.Node = pod.Name, string(pod.UID), pod.Spec.NodeName
			step("agent running")
			return a, nil
		}
		if !shared || !apierrors.IsAlreadyExists(err) {
			return nil, explain(err, "create", "jobs.batch", ns)
		}
		if attempt >= 5 {
			return nil, errorf(ReasonAgentFailed, err, "the agent job %s/%s of the target pod keeps being replaced; try again, or `kubectl delete job %s -n %s`",
				ns, job.Name, job.Name, ns)
		}
		// Another session created the target pod's agent Job first (or an
		// agent of it is still finishing).
		existing, err := c.Clientset.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue // gone meanwhile: create it
		case err != nil:
			return nil, explain(err, "get", "jobs.batch", ns)
		}
		pods, err := c.jobPods(ctx, existing)
		if err != nil {
			return nil, err
		}
		switch {
		case jobEnding(existing, pods, avoid), jobStuck(existing, pods, time.Now()):
			step("waiting for the previous agent to end")
			if err := c.removeJob(ctx, existing); err != nil {
				return nil, err
			}
			continue
		case !joinable(&existing.Spec.Template.Spec, image):
			// Another doppel version's agent: its protocol may differ.
			// This session gets an agent of its own.
			step("an agent of another version serves the target: starting a separate one")
			opts.Exclusive = true
			if job, err = AgentJob(opts); err != nil {
				return nil, err
			}
			shared = false
			continue
		}
		step("waiting for the agent another session is starting")
		pod, err := c.waitAgent(ctx, nil, existing, image, step, timeout) // no hello: it joins first
		if err != nil {
			return nil, err
		}
		a, err := c.joinAgent(ctx, newAgent(), pod, step)
		if !errors.Is(err, errAgentGone) {
			return a, err
		}
		avoid = string(pod.UID)
	}
}

// AgentJob builds the agent's Job (exported for tests and `--dry-run`
// style inspection).
func AgentJob(opts AgentOptions) (*batchv1.Job, error) {
	t, cfg := opts.Target, opts.Config
	ns := cfg.Namespace
	if ns == "" {
		ns = t.Namespace
	}
	image := cfg.Image
	if image == "" {
		image = DefaultImage()
	}
	labels := map[string]string{}
	maps.Copy(labels, cfg.Labels)
	labels[LabelName] = AgentName
	labels["app.kubernetes.io/managed-by"] = "doppel"
	if opts.User != "" {
		labels[LabelUser] = UserLabel(opts.User)
	}
	if opts.Session != "" {
		labels[LabelSession] = opts.Session
	}
	annotations := map[string]string{}
	maps.Copy(annotations, cfg.Annotations)
	// A mesh proxy in the agent pod would intercept the port-forward and
	// the agent's own traffic, and outlive the agent: its Job would never
	// complete, so that its TTL never removes it.
	annotations["sidecar.istio.io/inject"] = "false"
	labels["sidecar.istio.io/inject"] = "false" // newer Istio reads the label
	annotations["linkerd.io/inject"] = "disabled"
	annotations["kuma.io/sidecar-injection"] = "disabled"
	annotations["consul.hashicorp.com/connect-inject"] = "false"
	annotations["appmesh.k8s.aws/sidecarInjectorWebhook"] = "disabled"
	annotations[AnnotationPort] = strconv.Itoa(AgentPort)
	if opts.User != "" {
		annotations[AnnotationUser] = opts.User
	}
	args := []string{"serve",
		"--listen", "127.0.0.1:" + strconv.Itoa(AgentPort),
		"--token-sha256", opts.TokenHash.String(),
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
	spec := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		TerminationGracePeriodSeconds: ptrTo(int64(5)),
		// The agent never calls the API server.
		AutomountServiceAccountToken: ptrTo(false),
		EnableServiceLinks:           ptrTo(false),
		ServiceAccountName:           cfg.ServiceAccount,
		Tolerations:                  tolerations(cfg.Tolerations),
	}
	for _, s := range cfg.ImagePullSecrets {
		spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s.Name})
	}
	ctr := corev1.Container{
		Name:                     AgentContainer,
		Image:                    image,
		ImagePullPolicy:          corev1.PullPolicy(cfg.ImagePullPolicy),
		Env:                      agentEnv(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	shared := !t.Targetless() && !opts.Exclusive
	if t.Targetless() {
		// The agent is its own target: PID 1 of its pod, whose network and
		// DNS the session uses. No host access, no capabilities.
		args = append(args, "--target-pid", "1")
		spec.NodeSelector = cfg.NodeSelector
		annotations[AnnotationTarget] = t.Namespace + "/targetless"
	} else {
		args = append(args, "--target-container-id", t.ContainerID)
		labels[LabelTargetPod] = t.PodUID
		annotations[AnnotationTarget] = t.Namespace + "/" + t.Pod + "/" + t.Container
		spec.HostPID = true
		// Through the scheduler (not nodeName) so that an impossible
		// placement surfaces as Unschedulable with its reason.
		spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{
					Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{t.Node},
				}}}},
			},
		}}
		ctr.SecurityContext = &corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"}},
		}
		if cfg.Privileged {
			ctr.SecurityContext.Privileged = ptrTo(true)
		}
	}
	if shared {
		// The agent reads its pod's annotations, where joining sessions
		// add their token hashes, from a downward API volume.
		args = append(args, "--token-file", TokenFile)
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: tokenVolume, VolumeSource: corev1.VolumeSource{
			DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{{
				Path: path.Base(TokenFile), FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"},
			}}},
		}})
		ctr.VolumeMounts = append(ctr.VolumeMounts, corev1.VolumeMount{Name: tokenVolume, MountPath: path.Dir(TokenFile), ReadOnly: true})
	}
	ctr.Args = args
	if cfg.Resources != nil {
		var err error
		if ctr.Resources.Requests, err = resourceList(cfg.Resources.Requests); err != nil {
			return nil, fmt.Errorf("agent.resources.requests: %w", err)
		}
		if ctr.Resources.Limits, err = resourceList(cfg.Resources.Limits); err != nil {
			return nil, fmt.Errorf("agent.resources.limits: %w", err)
		}
	}
	spec.Containers = []corev1.Container{ctr}
	meta := metav1.ObjectMeta{GenerateName: AgentName + "-", Namespace: ns, Labels: labels, Annotations: annotations}
	if shared {
		meta.GenerateName, meta.Name = "", AgentJobName(t.PodUID)
	}
	job := &batchv1.Job{
		ObjectMeta: meta,
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptrTo(int32(0)),
			TTLSecondsAfterFinished: ptrTo(int32(opts.Config.TTL)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels), Annotations: maps.Clone(annotations)},
				Spec:       spec,
			},
		},
	}
	return job, nil
}

// waitAgent follows the Job's pod until the agent container runs, and
// turns every known dead end into an Error. With the options' Hello it
// also greets the agent a meanwhile (a.early) and is done when that works;
// a is nil for an agent this session joins.
func (c *Client) waitAgent(ctx context.Context, a *Agent, job *batchv1.Job, image string, step func(string), timeout time.Duration) (pod *corev1.Pod, err error) {
	ns := job.Namespace
	var greet *greeter
	defer func() {
		if greet == nil {
			return
		}
		a.early = greet.stop()
		if err != nil && a.early != nil {
			a.early.Close()
			a.early = nil
		}
	}()
	var greeted <-chan struct{}
	var greetedPod corev1.Pod // the pod the greeting dials
	var lastEvents time.Time
	pulling := false
	// A watch wakes the loop as soon as the pod changes; the list below
	// stays the truth, and the ticker what it falls back to (a watch not
	// allowed, or ended by the API server).
	var changed <-chan watch.Event
	if w, err := c.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{
		LabelSelector: jobPodSelector(job),
	}); err == nil {
		defer w.Stop()
		changed = w.ResultChan()
	}
	for {
		pods, err := c.jobPods(ctx, job)
		if err != nil {
			if ctx.Err() != nil {
				return nil, c.startTimeout(ctx, job, timeout)
			}
			return nil, err
		}
		// Events say why a pod is missing or slow (FailedCreate, Pulling);
		// reading them once a second is enough.
		readEvents := time.Since(lastEvents) > time.Second
		if len(pods) == 0 {
			step("waiting for the job to create the agent pod")
			if readEvents {
				lastEvents = time.Now()
				if err := c.jobCreateFailure(ctx, job); err != nil {
					return nil, err
				}
			}
		} else {
			pod := &pods[0]
			done, err := agentPodState(pod, image, step)
			if err != nil || done {
				return pod, err
			}
			if greet == nil && a != nil && a.opts.Hello != nil && pod.Spec.NodeName != "" {
				a.Pod, greetedPod = pod.Name, *pod
				greet = greetAgent(ctx, a, *a.opts.Hello)
				greeted = greet.done
			}
			if readEvents && !pulling && pod.Spec.NodeName != "" {
				lastEvents = time.Now()
				if c.hasEvent(ctx, ns, pod.UID, "Pulling") {
					pulling = true
				}
			}
			if pulling && waiting(pod) {
				step("pulling image " + image)
			}
		}
		select {
		case <-ctx.Done():
			return nil, c.startTimeout(ctx, job, timeout)
		case _, ok := <-changed:
			if !ok {
				changed = nil
			}
		case <-greeted:
			if greet.client != nil {
				return &greetedPod, nil
			}
			greeted = nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waiting reports whether a container of the pod waits to start.
func waiting(pod *corev1.Pod) bool {
	for _, st := range pod.Status.ContainerStatuses {
		if st.State.Waiting != nil {
			return true
		}
	}
	return false
}

// agentPodState reports whether the agent container runs, or why it never
// will.
func agentPodState(pod *corev1.Pod, image string, step func(string)) (bool, error) {
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
			return false, errorf(ReasonUnschedulable, nil, "the agent pod cannot be scheduled on node %s (where the target runs): %s",
				nodeOf(pod), cond.Message)
		}
	}
	if pod.Status.Phase == corev1.PodFailed {
		return false, errorf(ReasonAgentFailed, nil, "the agent pod %s failed: %s %s%s", pod.Name, pod.Status.Reason, pod.Status.Message, terminated(pod))
	}
	if pod.Spec.NodeName == "" {
		step("waiting for the agent pod to be scheduled")
		return false, nil
	}
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name != AgentContainer {
			continue
		}
		switch {
		case st.State.Running != nil:
			return true, nil
		case st.State.Terminated != nil:
			return false, errorf(ReasonAgentFailed, nil, "the agent exited (%s, code %d): %s",
				st.State.Terminated.Reason, st.State.Terminated.ExitCode, strings.TrimSpace(st.State.Terminated.Message))
		case st.State.Waiting != nil:
			if err := waitingError(st.State.Waiting, pod.Spec.NodeName, image); err != nil {
				return false, err
			}
		}
	}
	step("starting the agent container")
	return false, nil
}

// waitingError is the dead end a waiting container is in (an image that
// can't be pulled, a container that can't be created), nil if none.
func waitingError(w *corev1.ContainerStateWaiting, node, image string) error {
	switch w.Reason {
	case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName":
		return errorf(ReasonImagePull, nil, "node %s cannot get the agent image %s (%s: %s): the image must be present on the node or pullable from its registry — "+
			"set agent.image to an image the cluster can pull (push it, or load it into the nodes; `make image` does so for the local cluster), or fix agent.image_pull_secrets",
			node, image, w.Reason, w.Message)
	case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
		return errorf(ReasonAgentFailed, nil, "the agent container cannot start (%s): %s", w.Reason, w.Message)
	}
	return nil
}

func nodeOf(pod *corev1.Pod) string {
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			for _, f := range t.MatchFields {
				if f.Key == "metadata.name" && len(f.Values) == 1 {
					return f.Values[0]
				}
			}
		}
	}
	return "(any)"
}

func terminated(pod *corev1.Pod) string {
	for _, st := range pod.Status.ContainerStatuses {
		if t := st.State.Terminated; t != nil && t.Message != "" {
			return ": " + strings.TrimSpace(t.Message)
		}
	}
	return ""
}

// jobCreateFailure reads the Job's FailedCreate events: pod security
// admission, quotas and limit ranges reject the pod there, not the Job.
func (c *Client) jobCreateFailure(ctx context.Context, job *batchv1.Job) error {
	events, err := c.events(ctx, job.Namespace, string(job.UID))
	if err != nil {
		return nil // not allowed to read events: the timeout will say more
	}
	for _, e := range events {
		if e.Reason != "FailedCreate" {
			continue
		}
		if isPodSecurity(e.Message) {
			return errorf(ReasonPodSecurity, nil, "%s", podSecurityMessage(e.Message, job.Namespace))
		}
		return errorf(ReasonAgentFailed, nil, "the job controller cannot create the agent pod in namespace %s: %s", job.Namespace, e.Message)
	}
	return nil
}

func (c *Client) hasEvent(ctx context.Context, ns string, uid any, reason string) bool {
	events, err := c.events(ctx, ns, fmt.Sprint(uid))
	if err != nil {
		return false
	}
	for _, e := range events {
		if e.Reason == reason {
			return true
		}
	}
	return false
}

func (c *Client) events(ctx context.Context, ns, uid string) ([]corev1.Event, error) {
	l, err := c.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.uid", uid).String(),
	})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// checkPodSecurity fails before anything is created when the namespace's
// pod security labels forbid what the agent needs (when they can be read:
// a cluster-wide default policy shows up later, as a FailedCreate event).
// A targetless agent asks for nothing (agent.privileged is for a target's
// agent only): any level admits it.
func (c *Client) checkPodSecurity(ctx context.Context, ns string, targetless bool) error {
	n, err := c.Clientset.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return errorf(ReasonNotFound, err, "the agent's namespace %s does not exist", ns)
		}
		return nil
	}
	level := n.Labels["pod-security.kubernetes.io/enforce"]
	if !targetless && (level == "baseline" || level == "restricted") {
		return errorf(ReasonPodSecurity, nil, "%s", podSecurityMessage(fmt.Sprintf(
			`violates PodSecurity %q: host namespaces (hostPID=true), non-default capabilities (NET_ADMIN, SYS_ADMIN, SYS_PTRACE)`,
			level+":"+orLatest(n.Labels["pod-security.kubernetes.io/enforce-version"])), ns))
	}
	return nil
}

func orLatest(v string) string {
	if v == "" {
		return "latest"
	}
	return v
}

func (c *Client) startTimeout(ctx context.Context, job *batchv1.Job, timeout time.Duration) error {
	if err := startCancelled(ctx); err != nil {
		return err
	}
	return errorf(ReasonTimeout, nil, "the agent did not start within %s (agent.startup_timeout); `kubectl describe job %s -n %s` shows why",
		timeout, job.Name, job.Namespace)
}

// startCancelled is the error of a start whose ctx was cancelled (^C, the
// IDE) rather than timed out, or nil.
func startCancelled(ctx context.Context) error {
	if err := ctx.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("the agent's start was cancelled: %w", err)
	}
	return nil
}

// Delete removes the agent's Job and its pod at once (sessions on it end).
func (a *Agent) Delete(ctx context.Context) error {
	if a.Job == "" {
		return nil
	}
	opts := metav1.DeleteOptions{PropagationPolicy: ptrTo(metav1.DeletePropagationBackground)}
	if a.jobUID != "" {
		opts.Preconditions = &metav1.Preconditions{UID: &a.jobUID}
	}
	err := a.client.Clientset.BatchV1().Jobs(a.Namespace).Delete(ctx, a.Job, opts)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or another Job by now
	}
	return explain(err, "delete", "jobs.batch", a.Namespace)
}

// Dial opens a new port-forward to the agent: one TCP connection in its
// pod, carried through the API server. Call it again after a drop to
// resume the session (protocol.Hello.Resume).
func (a *Agent) Dial(ctx context.Context) (net.Conn, error) {
	return a.client.DialPod(ctx, a.Namespace, a.Pod, a.Port)
}

// agentSchedTrace is the agent's GODEBUG: a schedtrace period so long it
// never prints (2^31-1 ms, 24.8 days after the node booted), set only
// because the Go runtime's sysmon thread then never goes into its deep
// sleep. In deep sleep, the first syscall after the agent was idle wakes
// it, and it then polls every 20 µs for a while: on each new connection
// that was 28 context switches in the agent instead of 11, and 1.3 ms of
// the agent's CPU instead of 1.0 (docs/agent.md, "Scheduling"). An idle
// agent's sysmon now wakes every 10 ms instead.
const agentSchedTrace = "schedtrace=2147483647"

// agentEnv is the agent container's environment (both modes).
func agentEnv() []corev1.EnvVar {
	return []corev1.EnvVar{{Name: "GODEBUG", Value: agentSchedTrace}}
}

func tolerations(ts []config.Toleration) []corev1.Toleration {
	out := make([]corev1.Toleration, 0, len(ts))
	for _, t := range ts {
		out = append(out, corev1.Toleration{
			Key: t.Key, Operator: corev1.TolerationOperator(t.Operator), Value: t.Value,
			Effect: corev1.TaintEffect(t.Effect), TolerationSeconds: t.TolerationSeconds,
		})
	}
	return out
}

func resourceList(m map[string]config.Quantity) (corev1.ResourceList, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := corev1.ResourceList{}
	for k, v := range m {
		q, err := resource.ParseQuantity(string(v))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[corev1.ResourceName(k)] = q
	}
	return out, nil
}

var labelUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// UserLabel makes a Kubernetes user name a label value: unsafe characters
// become '.', and a name too long keeps its head and a hash, so different
// users never share a value.
func UserLabel(user string) string {
	v := labelUnsafe.ReplaceAllString(user, ".")
	if len(v) > 63 {
		sum := sha256.Sum256([]byte(user))
		v = v[:50] + "-" + hex.EncodeToString(sum[:])[:12]
	}
	return strings.Trim(v, "._-")
}

func ptrTo[T any](v T) *T { return &v }
