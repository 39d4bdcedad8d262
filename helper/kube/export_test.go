package kube

import "github.com/doppel-dev/doppel/helper/config"

func TargetPathForTest(kind, name string) config.TargetPath {
	return config.TargetPath{Kind: config.TargetKind(kind), Name: name}
}

func AgentConfigForTest(image string) config.AgentConfig {
	return config.AgentConfig{Image: image}
}
