// Package outgoing dials TCP and UDP connections from the target pod's
// network namespace, so that a helper's connection leaves from the pod's
// address, through the pod's routes and network policies, and fails with
// the errno the pod itself would see (ECONNREFUSED, ENETUNREACH,
// EHOSTUNREACH, ETIMEDOUT). Linux only.
package outgoing
