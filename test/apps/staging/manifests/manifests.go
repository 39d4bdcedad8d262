// Package manifests embeds the staging application's Kubernetes
// manifests, so e2e tests can apply exactly what is checked in.
package manifests

import _ "embed"

// Staging is staging.yaml: namespace staging with postgres, backend and
// frontend Deployments and Services.
//
//go:embed staging.yaml
var Staging []byte
