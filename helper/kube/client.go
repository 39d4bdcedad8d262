// Package kube is doppel's side of the cluster: it loads kubeconfigs the way
// kubectl does, resolves targets to a pod and container, lists what a user
// may target, starts and reuses agent Jobs next to targets, port-forwards to
// them through the API server and removes what a user left behind.
package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	authnv1 "k8s.io/api/authentication/v1"
	authnv1beta1 "k8s.io/api/authentication/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options say which cluster, context and namespace to use, as kubectl's
// --kubeconfig, --context and -n do. Empty fields take kubectl's defaults:
// $KUBECONFIG (a list) or ~/.kube/config, the current context, and the
// context's namespace.
type Options struct {
	// Kubeconfig is an explicit kubeconfig file (the config's "kubeconfig"
	// key); it replaces $KUBECONFIG as kubectl's --kubeconfig does.
	Kubeconfig string
	// Context is a kubeconfig context name (the config's "kube_context").
	Context string
	// Namespace overrides the context's namespace (-n).
	Namespace string
}

// Client talks to one cluster as the user the kubeconfig names.
type Client struct {
	Config    *rest.Config
	Clientset kubernetes.Interface
	Dynamic   dynamic.Interface
	// Namespace is the namespace to work in: Options.Namespace, else the
	// context's, else "default".
	Namespace string
	// ContextName is the kubeconfig context in use ("" without a file).
	ContextName string
	// kubeconfigUser is the context's user entry: who Username says you
	// are when the API server can't tell.
	kubeconfigUser string
	// PortForward chooses the port-forward protocol; "" is plain SPDY
	// with WebSocket fallback.
	PortForward PortForwardMode
	// pfWebSocket: plain SPDY failed once, later dials start with WebSocket.
	pfWebSocket atomic.Bool
}

// New loads the kubeconfig as kubectl does (client-go's loading rules, so
// exec credential plugins, auth providers and token files work unchanged)
// and returns a client for it.
func New(opts Options) (*Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if opts.Kubeconfig != "" {
		rules.ExplicitPath = expandHome(opts.Kubeconfig)
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: opts.Context}
	overrides.Context.Namespace = opts.Namespace
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, fmt.Errorf("no Kubernetes cluster configured: set KUBECONFIG, create ~/.kube/config, or set \"kubeconfig\" in the doppel config")
		}
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	raw, err := cc.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	c, err := NewForConfig(cfg, ns)
	if err != nil {
		return nil, err
	}
	// DOPPEL_PORT_FORWARD=spdy|websocket chooses the port-forward protocol
	// (for proxies that pass only one of them, and for measuring).
	switch mode := PortForwardMode(os.Getenv("DOPPEL_PORT_FORWARD")); mode {
	case "":
	case PortForwardSPDY, PortForwardWebSocket:
		c.PortForward = mode
	default:
		return nil, fmt.Errorf("DOPPEL_PORT_FORWARD=%s: use spdy or websocket", mode)
	}
	c.ContextName = raw.CurrentContext
	if opts.Context != "" {
		c.ContextName = opts.Context
	}
	if ctx := raw.Contexts[c.ContextName]; ctx != nil {
		c.kubeconfigUser = ctx.AuthInfo
	}
	return c, nil
}

// NewForConfig returns a client for a rest.Config (tests, in-cluster use).
func NewForConfig(cfg *rest.Config, namespace string) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "doppel"
	}
	// Resolution lists several kinds at once; client-go's default 5 QPS
	// would make `doppel ls -A` crawl.
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	// client-go prints API warnings (such as pod security "would violate"
	// notices) to stderr; doppel reports what matters itself.
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if namespace == "" {
		namespace = metav1.NamespaceDefault
	}
	return &Client{Config: cfg, Clientset: cs, Dynamic: dyn, Namespace: namespace}, nil
}

// namespace returns ns, or the client's namespace when ns is empty.
func (c *Client) namespace(ns string) string {
	if ns != "" {
		return ns
	}
	return c.Namespace
}

// Username returns the Kubernetes user the credentials authenticate as
// (a SelfSubjectReview), which labels the agents this user starts so that
// `doppel cleanup` finds them from any machine. Where the review is not
// served (before Kubernetes 1.28: v1beta1) or not allowed, it is
// "kubeconfig:" and the context's user entry: the same for every session
// and cleanup run with that kubeconfig.
func (c *Client) Username(ctx context.Context) (string, error) {
	r, err := c.Clientset.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err == nil && r.Status.UserInfo.Username != "" {
		return r.Status.UserInfo.Username, nil
	}
	notServed := err != nil && (apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err))
	if notServed {
		b, berr := c.Clientset.AuthenticationV1beta1().SelfSubjectReviews().Create(ctx, &authnv1beta1.SelfSubjectReview{}, metav1.CreateOptions{})
		if berr == nil && b.Status.UserInfo.Username != "" {
			return b.Status.UserInfo.Username, nil
		}
	}
	// Not when the API server could not be reached: a transient error must
	// not label agents as another user.
	if c.kubeconfigUser != "" && (err == nil || notServed || apierrors.IsForbidden(err)) {
		return "kubeconfig:" + c.kubeconfigUser, nil
	}
	if err != nil {
		return "", explain(err, "create", "selfsubjectreviews.authentication.k8s.io", "")
	}
	return "", errors.New("the API server did not say who you are (empty SelfSubjectReview)")
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}
