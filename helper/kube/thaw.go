package kube

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doppel-dev/doppel/helper/config"
)

// ThawConfig is the agent configuration thaw Jobs use (image, namespace,
// pull policy…); StartAgent's callers set it from the config.
var ThawConfig *config.AgentConfig

// thaw runs `doppel-agent thaw` for the container a stale freeze lease
// names, as a one-shot Job on its node, and waits for it (a minute).
func (c *Client) thaw(ctx context.Context, r ObjectRef, l *Lease) error {
	if l.ContainerID == "" || l.Node == "" {
		return nil
	}
	cfg := config.Default().Agent
	if ThawConfig != nil {
		cfg = *ThawConfig
	}
	job, err := AgentJob(AgentOptions{
		Target:    &Target{Namespace: r.Namespace, Pod: r.Name, Node: l.Node, ContainerID: l.ContainerID},
		Config:    cfg,
		Exclusive: true,
	})
	if err != nil {
		return err
	}
	job.GenerateName = AgentName + "-thaw-"
	ctr := &job.Spec.Template.Spec.Containers[0]
	ctr.Args = []string{"thaw", "--target-container-id", l.ContainerID}
	delete(job.Labels, LabelTargetPod)
	delete(job.Spec.Template.Labels, LabelTargetPod)
	created, err := c.Clientset.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{})
	if err != nil {
		return explain(err, "create", "jobs.batch", job.Namespace)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		c.Clientset.BatchV1().Jobs(created.Namespace).Delete(dctx, created.Name, metav1.DeleteOptions{PropagationPolicy: ptrTo(metav1.DeletePropagationBackground)})
	}()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		// A pod that can't start (its image) fails the thaw at once.
		if pods, err := c.jobPods(wctx, created); err == nil {
			for i := range pods {
				// The pod's own end is the fact; the Job's condition
				// follows it, late when the controller is busy.
				switch pods[i].Status.Phase {
				case corev1.PodSucceeded:
					return nil
				case corev1.PodFailed:
					return fmt.Errorf("the thaw job %s/%s failed%s", created.Namespace, created.Name, terminated(&pods[i]))
				}
				for _, st := range pods[i].Status.ContainerStatuses {
					if st.State.Waiting != nil {
						if err := waitingError(st.State.Waiting, pods[i].Spec.NodeName, ctr.Image); err != nil {
							return fmt.Errorf("the thaw job %s/%s: %w", created.Namespace, created.Name, err)
						}
					}
				}
			}
		}
		j, err := c.Clientset.BatchV1().Jobs(created.Namespace).Get(wctx, created.Name, metav1.GetOptions{})
		if err == nil {
			for _, cond := range j.Status.Conditions {
				if cond.Status != corev1.ConditionTrue {
					continue
				}
				switch cond.Type {
				case batchv1.JobComplete:
					return nil
				case batchv1.JobFailed:
					return fmt.Errorf("the thaw job %s/%s failed: %s", j.Namespace, j.Name, cond.Message)
				}
			}
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("the thaw job %s/%s did not finish within a minute", created.Namespace, created.Name)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
