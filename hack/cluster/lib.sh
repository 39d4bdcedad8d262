# Shared settings and helpers of the hack/cluster scripts (sourced, not run).
# Every path, bridge, routing table and chain the cluster uses is private to
# it, so it can share a machine with anything else and be removed exactly.

CLUSTER_NAME=${DOPPEL_CLUSTER_NAME:-doppel}
NODE_NAME=${CLUSTER_NAME}-control-plane
CACHE_DIR=${DOPPEL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/doppel}
STATE_DIR=${DOPPEL_CLUSTER_STATE:-/var/lib/doppel-cluster}
RUN_DIR=${DOPPEL_CLUSTER_RUN:-/run/doppel-cluster}
PKI_DIR=$STATE_DIR/pki
KCFG_DIR=$STATE_DIR/kubeconfig
LOG_DIR=$STATE_DIR/logs
KUBECONFIG_ADMIN=$KCFG_DIR/admin.conf

# Network: the node address sits alone on a bridge with no ports, the service
# range is routed into that bridge (dropped unless kube-proxy translated it),
# and pod-originated packets use a table that knows only the pod subnet.
NODE_BRIDGE=dpl-node0
NODE_IP=10.250.0.1
POD_BRIDGE=dpl-cni0
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
ROUTE_TABLE=2501
RULE_PRIORITY=2501
GUARD_CHAIN=DOPPEL-GUARD
CNI_NETWORK=doppel-pods

APISERVER_PORT=6443
ETCD_CLIENT_PORT=2379
ETCD_PEER_PORT=2380
KCM_PORT=10257
SCHEDULER_PORT=10259
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248
PROXY_HEALTHZ_PORT=10256
PROXY_METRICS_PORT=10249

K8S_VERSION=v1.34.4
COREDNS_VERSION=v1.12.4
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
COREDNS_IMAGE=doppel.local/coredns:$COREDNS_VERSION
CGROUP_ROOT=/$CLUSTER_NAME-cluster
CONTAINERD_SOCK=$RUN_DIR/containerd.sock

# Debian packages the cluster runs on.
DEBIAN_PACKAGES="containerd runc containernetworking-plugins iptables nftables conntrack socat iproute2 curl ca-certificates"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() {
	[[ $(id -u) == 0 ]] || die "the local cluster needs root (network namespaces, bridges, containerd): run as root"
}

# ensure_packages installs the Debian packages that are missing.
ensure_packages() {
	local missing=()
	for p in "$@"; do
		grep -q "install ok installed" <<<"$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" || missing+=("$p")
	done
	((${#missing[@]} == 0)) && return 0
	log "installing Debian packages: ${missing[*]}"
	# policy-rc.d keeps Debian's own containerd service from starting.
	local policy=/usr/sbin/policy-rc.d created=""
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	[[ -n $created ]] && rm -f "$policy"
	return 0
}

# pid_alive NAME prints the pid of component NAME and succeeds if it runs.
# The pid file records the process start time too, so a recycled pid is
# never taken for ours.
pid_alive() {
	local f=$RUN_DIR/$1.pid pid start got
	[[ -f $f ]] || return 1
	read -r pid start <"$f" || return 1
	[[ -n $pid && -r /proc/$pid/stat ]] || return 1
	got=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $20}')
	[[ $got == "$start" ]] || return 1
	echo "$pid"
}

# start_component NAME CMD... starts CMD detached, logging to LOG_DIR/NAME.log.
start_component() {
	local name=$1 pid start
	shift
	mkdir -p "$LOG_DIR" "$RUN_DIR"
	setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
	pid=$!
	start=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $20}')
	echo "$pid $start" >"$RUN_DIR/$name.pid"
}

# stop_components NAME... stops components by their recorded pids: SIGTERM
# to all at once, SIGKILL to whatever still runs after a few seconds.
stop_components() {
	local name pid pids=() i
	for name in "$@"; do
		if pid=$(pid_alive "$name"); then
			kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
		fi
		rm -f "$RUN_DIR/$name.pid"
	done
	local alive
	for i in $(seq 30); do
		alive=0
		for pid in "${pids[@]}"; do [[ -d /proc/$pid ]] && alive=1; done
		((alive)) || return 0
		sleep 0.1
	done
	for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
	sleep 0.2
	return 0
}

kubectl_admin() { "$K8S_BIN" kubectl --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
