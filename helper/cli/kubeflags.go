package cli

import (
	"github.com/spf13/pflag"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/helper/kube"
)

// kubeFlags are kubectl's cluster flags, shared by the commands that talk
// to the cluster. They override the config's kubeconfig, kube_context and
// target.namespace.
type kubeFlags struct {
	kubeconfig string
	context    string
	namespace  string
}

func (f *kubeFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	fl.StringVar(&f.context, "context", "", "kubeconfig context (default: the current context)")
	fl.StringVarP(&f.namespace, "namespace", "n", "", "namespace (default: the context's)")
}

// options merges the flags over the config (which may be nil).
func (f *kubeFlags) options(cfg *config.Config) kube.Options {
	var o kube.Options
	if cfg != nil {
		o = kube.Options{Kubeconfig: cfg.Kubeconfig, Context: cfg.KubeContext, Namespace: cfg.Target.Namespace}
	}
	if f.kubeconfig != "" {
		o.Kubeconfig = f.kubeconfig
	}
	if f.context != "" {
		o.Context = f.context
	}
	if f.namespace != "" {
		o.Namespace = f.namespace
	}
	return o
}
