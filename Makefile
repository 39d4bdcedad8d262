# doppel — build, images, the local cluster, the demo and the tests.
# `make demo` and `make test` are the two commands a fresh machine needs.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/doppel-dev/doppel/internal/buildinfo.Version=$(VERSION) \
           -X github.com/doppel-dev/doppel/internal/buildinfo.Commit=$(COMMIT)
BIN     := bin
CACHE   := $(or $(DOPPEL_CACHE_DIR),$(HOME)/.cache/doppel)
GO      ?= go
GOBIN_TOOLS := $(CACHE)/tools
STATICCHECK_VERSION := v0.8.2

CLUSTER_STATE := $(or $(DOPPEL_CLUSTER_STATE),/var/lib/doppel-cluster)
CLUSTER_RUN   := $(or $(DOPPEL_CLUSTER_RUN),/run/doppel-cluster)
ifeq ($(DOPPEL_USE_EXISTING_CLUSTER),1)
  export KUBECONFIG ?= $(HOME)/.kube/config
else
  export KUBECONFIG := $(CLUSTER_STATE)/kubeconfig/admin.conf
endif

AGENT_IMAGE := doppel-agent:$(VERSION)
# Images of the demo and the tests, built from static binaries.
APP_IMAGES  := staging-backend staging-frontend staging-postgres toolbox queue
# Debian packages the tests and the demo need besides the cluster's own.
TEST_PACKAGES := postgresql-15 dash iptables nftables iproute2 curl util-linux \
                 openjdk-17-jdk-headless python3-debugpy libgoogle-gson-java junit5 \
                 chromium libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev pkg-config ripgrep \
                 build-essential python3

.PHONY: build doppel agent shim image images cluster cluster-down demo test test-unit \
        test-fuzz test-integration test-e2e test-jetbrains test-cluster-lifecycle lint schema deps clean

build: doppel agent shim

doppel:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/doppel ./helper

agent:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/doppel-agent ./agent

# shim: libdoppel.so, the preload library for launches where only the
# environment can be set (IDE debug sessions).
shim:
	$(MAKE) -C layer/shim OUT=$(CURDIR)/$(BIN)/libdoppel.so

# image: the agent image, as a tarball anyone can `docker load`, and imported
# into the local cluster when it runs.
image: agent
	$(GO) run ./hack/image -tag $(AGENT_IMAGE) -out $(BIN)/doppel-agent-$(VERSION).tar \
	  -add $(BIN)/doppel-agent:/doppel-agent -entrypoint /doppel-agent \
	  $(if $(wildcard $(CLUSTER_RUN)/containerd.sock),-import $(CLUSTER_RUN)/containerd.sock)

# images: the demo and test application images, imported into the local cluster.
images: deps
	hack/build-app-images.sh $(APP_IMAGES)

cluster:
	@if [[ "$${DOPPEL_USE_EXISTING_CLUSTER:-}" == 1 ]]; then \
	  echo "DOPPEL_USE_EXISTING_CLUSTER=1: using the cluster KUBECONFIG names ($$KUBECONFIG)"; \
	else hack/cluster/up.sh; fi

cluster-down:
	hack/cluster/down.sh

demo: cluster images image doppel
	hack/demo.sh

deps:
	@hack/deps.sh $(TEST_PACKAGES)

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^hack/cluster/k8s/')); \
	  if [[ -n "$$out" ]]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@[[ -x $(GOBIN_TOOLS)/staticcheck ]] || GOBIN=$(GOBIN_TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN_TOOLS)/staticcheck ./...

test-unit: deps
	$(GO) test -count=1 ./...

# test-fuzz: each fuzz target on its committed corpus for a bounded number
# of inputs (a count, not a duration: a duration that ends while the fuzzer
# minimizes a new input fails with "context deadline exceeded"). About 10-20 s
# each here.
FUZZ_TARGETS := ./protocol:FuzzDecode:150000 ./helper/config:FuzzParse:60000 \
  ./agent/incoming/httpfilter:FuzzMatch:20000 ./agent/incoming/http1:FuzzReadRequest:120000 ./agent/incoming/http1:FuzzChunked:100000
test-fuzz:
	@for t in $(FUZZ_TARGETS); do IFS=: read -r pkg fn n <<<"$$t"; \
	  echo "fuzz $$fn ($$pkg) for $$n inputs"; \
	  $(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$${n}x -fuzzminimizetime=5s $$pkg || exit 1; done

# test-integration: privileged tests (root): network namespaces play the pod,
# real programs run under the layer.
test-integration:
	$(GO) test -count=1 -p 1 -tags integration -timeout 20m ./protocol/... ./agent/... ./helper/... ./layer/... ./test/integration/

# test: everything, as CI runs it. Unit tests first (fast), then fuzzing and
# the privileged integration suites, then the real cluster, the end-to-end
# suites, and the cluster lifecycle suite last (it tears the cluster down
# and brings it back).
test: lint test-unit test-fuzz test-integration cluster images image test-e2e test-jetbrains test-vscode test-cluster-lifecycle

test-e2e:
	DOPPEL_AGENT_IMAGE=$(AGENT_IMAGE) $(GO) test -count=1 -p 1 -tags e2e -timeout 30m ./test/e2e/

# test-jetbrains: the JetBrains plugin's Kotlin core, compiled with npm's
# Kotlin compiler and tested against the real helper, a real session in
# the local cluster included (the IntelliJ glue needs the JetBrains
# repositories: extensions/jetbrains/README.md).
test-jetbrains: deps doppel shim
	DOPPEL_BIN=$(CURDIR)/$(BIN)/doppel DOPPEL_JB_SESSION=1 DOPPEL_AGENT_IMAGE=$(AGENT_IMAGE) extensions/jetbrains/build.sh

test-cluster-lifecycle:
	@if [[ "$${DOPPEL_USE_EXISTING_CLUSTER:-}" == 1 ]]; then \
	  echo "skipping the local cluster's lifecycle suite: DOPPEL_USE_EXISTING_CLUSTER=1"; \
	else $(GO) test -count=1 -p 1 -tags e2e -timeout 20m ./test/e2e/lifecycle/; fi

# schema: regenerate schema/doppel.schema.json from the config types (a unit
# test fails when the committed file is stale).
schema:
	$(GO) run ./schema/gen

clean:
	rm -rf $(BIN)

include extensions/vscode/Makefile.inc
