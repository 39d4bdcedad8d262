package kube

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Reasons of Error, stable for the IDE (which may offer a fix per reason).
const (
	ReasonNotFound           = "not_found"           // the target does not exist
	ReasonNotReady           = "not_ready"           // no running, ready pod
	ReasonAmbiguousContainer = "ambiguous_container" // several containers, none chosen
	ReasonUnsupported        = "unsupported"         // e.g. rollout without Argo Rollouts
	ReasonForbidden          = "forbidden"           // RBAC
	ReasonPodSecurity        = "pod_security"        // pod security admission
	ReasonImagePull          = "image_pull"
	ReasonUnschedulable      = "unschedulable"
	ReasonAgentFailed        = "agent_failed" // the agent pod started and failed
	ReasonTimeout            = "timeout"
)

// Error is an error about the cluster with what the user can do about it.
type Error struct {
	Reason  string
	Message string
	Err     error // the API error behind it, if any
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

// Category tells the CLI and the IDE how to show the error: "user" errors
// name what to change in the command or config, "cluster" ones what to ask
// of the cluster (rights, images, policies).
func (e *Error) Category() string {
	switch e.Reason {
	case ReasonNotFound, ReasonAmbiguousContainer, ReasonUnsupported, ReasonNotReady:
		return "user"
	}
	return "cluster"
}

// ReasonOf returns the Reason of an *Error in err's chain, or "".
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func errorf(reason string, err error, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...), Err: err}
}

// explain turns an API error of a request (verb on resource, such as
// "jobs.batch") into one that says what is missing. Forbidden becomes the
// RBAC rule to ask for; other errors keep the API server's text.
func explain(err error, verb, resource, namespace string) error {
	if err == nil {
		return nil
	}
	if !apierrors.IsForbidden(err) {
		return err
	}
	msg := err.Error()
	if isPodSecurity(msg) {
		return errorf(ReasonPodSecurity, err, "%s", podSecurityMessage(msg, namespace))
	}
	group, plural := "", resource
	if i := strings.IndexByte(resource, '.'); i >= 0 {
		plural, group = resource[:i], resource[i+1:]
	}
	var status apierrors.APIStatus
	// The server's details name the resource without its subresource
	// (pods, for pods/ephemeralcontainers): the caller's name is exact.
	if errors.As(err, &status) && !strings.Contains(plural, "/") {
		if d := status.Status().Details; d != nil && d.Kind != "" {
			plural, group = d.Kind, d.Group
		}
	}
	full := plural
	if group != "" {
		full += "." + group
	}
	where := "cluster-wide"
	if namespace != "" {
		where = "in namespace " + namespace
	}
	if !rbacDenial.MatchString(msg) {
		// An admission webhook or policy (Gatekeeper, Kyverno) answers 403
		// too: what it says is the cause, not a missing RBAC verb.
		return errorf(ReasonForbidden, err, "the cluster refused to %s %s %s: %s", verb, full, where, msg)
	}
	g := group
	if g == "" {
		g = `"" (core)`
	}
	return errorf(ReasonForbidden, err, "cannot %s %s %s: ask for RBAC verb %q on %q (API group %s) %s",
		verb, full, where, verb, plural, g, where)
}

// rbacDenial is how the API server's authorizer words a denial.
var rbacDenial = regexp.MustCompile(`\bcannot [a-z]+ resource "`)

// Pod security admission rejections read `pods "x" is forbidden: violates
// PodSecurity "baseline:latest": host namespaces (hostPID=true), …`.
func isPodSecurity(msg string) bool { return strings.Contains(msg, "violates PodSecurity") }

func podSecurityMessage(msg, namespace string) string {
	detail := msg
	if i := strings.Index(msg, "violates PodSecurity"); i >= 0 {
		detail = msg[i:]
	}
	return fmt.Sprintf("the agent pod is rejected by pod security admission in namespace %s: %s. "+
		"The agent needs hostPID and the capabilities NET_ADMIN, SYS_ADMIN and SYS_PTRACE, which only the \"privileged\" level allows: "+
		"run it in a namespace labelled pod-security.kubernetes.io/enforce=privileged (config agent.namespace), or ask an admin to relabel %s",
		namespace, detail, namespace)
}
