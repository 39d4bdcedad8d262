#!/usr/bin/env bash
# Brings up the local single-node Kubernetes, or repairs it. Idempotent: it
# installs and builds only what is missing, leaves healthy components alone,
# restarts dead ones, and ends by printing the `export KUBECONFIG=...` line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need_root
t0=$(date +%s.%N)

ensure_packages $DEBIAN_PACKAGES
K8S_BIN=$("$here/build-k8s.sh")
COREDNS_BIN=$("$here/build-coredns.sh")
mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR"

# --- network -----------------------------------------------------------------

setup_network() {
	if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
		log "creating node bridge $NODE_BRIDGE ($NODE_IP)"
		ip link add "$NODE_BRIDGE" type bridge
	fi
	grep -q "inet $NODE_IP/32" <<<"$(ip addr show dev "$NODE_BRIDGE")" || ip addr add "$NODE_IP/32" dev "$NODE_BRIDGE"
	ip link set "$NODE_BRIDGE" up
	# A Service packet kube-proxy did not translate ends in the portless
	# bridge instead of following the default route off the machine.
	ip route replace "$SERVICE_CIDR" dev "$NODE_BRIDGE"
	# Pod-originated packets may only reach pods; everything else is unreachable.
	# The CNI bridge plugin adopts an existing bridge; creating it here lets
	# the pod route go in before the first pod.
	ip link show "$POD_BRIDGE" >/dev/null 2>&1 || ip link add "$POD_BRIDGE" type bridge
	ip link set "$POD_BRIDGE" up
	ip route replace "$POD_CIDR" dev "$POD_BRIDGE" table "$ROUTE_TABLE"
	ip route replace unreachable default table "$ROUTE_TABLE"
	grep -q "iif $POD_BRIDGE lookup $ROUTE_TABLE" <<<"$(ip rule show)" ||
		ip rule add priority "$RULE_PRIORITY" iif "$POD_BRIDGE" lookup "$ROUTE_TABLE"
	# Forwarding guard: pod traffic may only be forwarded between pods.
	if ! iptables -w -t filter -S "$GUARD_CHAIN" >/dev/null 2>&1; then
		iptables -w -t filter -N "$GUARD_CHAIN"
	fi
	iptables -w -t filter -C "$GUARD_CHAIN" -i "$POD_BRIDGE" ! -o "$POD_BRIDGE" -j DROP 2>/dev/null ||
		iptables -w -t filter -A "$GUARD_CHAIN" -i "$POD_BRIDGE" ! -o "$POD_BRIDGE" -j DROP
	iptables -w -t filter -C "$GUARD_CHAIN" -o "$POD_BRIDGE" ! -i "$POD_BRIDGE" -j DROP 2>/dev/null ||
		iptables -w -t filter -A "$GUARD_CHAIN" -o "$POD_BRIDGE" ! -i "$POD_BRIDGE" -j DROP
	iptables -w -t filter -C FORWARD -j "$GUARD_CHAIN" 2>/dev/null ||
		iptables -w -t filter -I FORWARD 1 -j "$GUARD_CHAIN"
	# Remember the shared directories containerd and CNI will create (shim
	# sockets, CNI result cache) so that teardown removes them, deepest first.
	[[ -f $STATE_DIR/created-dirs ]] || for d in /run/containerd/s /run/containerd /var/lib/cni/results /var/lib/cni; do
		[[ -e $d ]] || echo "$d"
	done >"$STATE_DIR/created-dirs"
	# Remember the sysctls we change so that teardown restores them.
	[[ -f $STATE_DIR/sysctl.saved ]] || {
		echo "net.ipv4.ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
		echo "net.bridge.bridge-nf-call-iptables=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0)"
	} >"$STATE_DIR/sysctl.saved"
	echo 1 >/proc/sys/net/ipv4/ip_forward
	[[ -w /proc/sys/net/bridge/bridge-nf-call-iptables ]] && echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
	return 0
}

check_ports() {
	local port
	for port in $APISERVER_PORT $ETCD_CLIENT_PORT $ETCD_PEER_PORT $KCM_PORT $SCHEDULER_PORT \
		$KUBELET_PORT $KUBELET_HEALTHZ_PORT $PROXY_HEALTHZ_PORT $PROXY_METRICS_PORT; do
		if ss -Hltn "sport = :$port" | awk '{print $4}' | grep -Eq "^(0\.0\.0\.0|\*|\[::\]):$port$"; then
			die "port $port is taken on every address by another program (ss -ltnp 'sport = :$port'); stop it or set a different port in hack/cluster/lib.sh"
		fi
	done
}

# --- certificates and configuration -------------------------------------------

render_configs() {
	mkdir -p "$STATE_DIR/config" "$STATE_DIR/cni/net.d" "$STATE_DIR/cni/networks"
	local f
	for f in "$here"/config/*; do
		sed -e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@RUN_DIR@|$RUN_DIR|g" \
			-e "s|@NODE_IP@|$NODE_IP|g" -e "s|@NODE_NAME@|$NODE_NAME|g" \
			-e "s|@CLUSTER_NAME@|$CLUSTER_NAME|g" -e "s|@K8S_VERSION@|$K8S_VERSION|g" \
			-e "s|@POD_CIDR@|$POD_CIDR|g" -e "s|@POD_BRIDGE@|$POD_BRIDGE|g" \
			-e "s|@SERVICE_CIDR@|$SERVICE_CIDR|g" -e "s|@DNS_SERVICE_IP@|$DNS_SERVICE_IP|g" \
			-e "s|@APISERVER_PORT@|$APISERVER_PORT|g" -e "s|@CNI_NETWORK@|$CNI_NETWORK|g" \
			-e "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" \
			-e "s|@CGROUP_ROOT@|$CGROUP_ROOT|g" -e "s|@KUBELET_PORT@|$KUBELET_PORT|g" \
			-e "s|@KUBELET_HEALTHZ_PORT@|$KUBELET_HEALTHZ_PORT|g" \
			-e "s|@PROXY_HEALTHZ_PORT@|$PROXY_HEALTHZ_PORT|g" -e "s|@PROXY_METRICS_PORT@|$PROXY_METRICS_PORT|g" \
			"$f" >"$STATE_DIR/config/$(basename "$f").tmp"
		mv "$STATE_DIR/config/$(basename "$f").tmp" "$STATE_DIR/config/$(basename "$f")"
	done
	cp "$STATE_DIR/config/10-doppel-pods.conflist" "$STATE_DIR/cni/net.d/"
	echo "nameserver 127.0.0.1" >"$STATE_DIR/config/resolv.conf"
}

ensure_pki() {
	[[ -f $PKI_DIR/ca.crt && -f $KCFG_DIR/admin.conf && -f $KCFG_DIR/kube-proxy.conf ]] && return 0
	log "creating certificates and kubeconfigs in $PKI_DIR"
	mkdir -p "$PKI_DIR" "$KCFG_DIR"
	"$K8S_BIN" kubeadm init phase certs all --config "$STATE_DIR/config/kubeadm.yaml" >/dev/null
	"$K8S_BIN" kubeadm init phase kubeconfig all --config "$STATE_DIR/config/kubeadm.yaml" \
		--kubeconfig-dir "$KCFG_DIR" >/dev/null
	"$K8S_BIN" kubeadm kubeconfig user --config "$STATE_DIR/config/kubeadm-cluster.yaml" \
		--client-name system:kube-proxy >"$KCFG_DIR/kube-proxy.conf.tmp"
	mv "$KCFG_DIR/kube-proxy.conf.tmp" "$KCFG_DIR/kube-proxy.conf"
}

ensure_cgroups() {
	local h
	for h in /sys/fs/cgroup/*/; do
		h=${h%/}
		[[ $h == */unified ]] && continue
		[[ -f $h/cgroup.procs ]] || continue
		mkdir -p "$h$CGROUP_ROOT"
		if [[ -f $h/cpuset.cpus ]]; then
			[[ -s $h$CGROUP_ROOT/cpuset.cpus && $(<"$h$CGROUP_ROOT/cpuset.cpus") != "" ]] || cat "$h/cpuset.cpus" >"$h$CGROUP_ROOT/cpuset.cpus"
			[[ $(<"$h$CGROUP_ROOT/cpuset.mems") != "" ]] || cat "$h/cpuset.mems" >"$h$CGROUP_ROOT/cpuset.mems"
		fi
	done
}

# --- components ----------------------------------------------------------------

wait_for() { # DESCRIPTION SECONDS CMD...
	local what=$1 secs=$2 i
	shift 2
	for ((i = 0; i < secs * 10; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "$what did not become healthy within ${secs}s; see $LOG_DIR"
}

curl_pki() { curl -sf --max-time 2 --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/apiserver-kubelet-client.crt" --key "$PKI_DIR/apiserver-kubelet-client.key" "$@"; }

healthy() {
	case $1 in
	containerd) ctr --address "$CONTAINERD_SOCK" version ;;
	etcd) grep -q '"health":"true"' <<<"$(curl -sf --max-time 2 --cacert "$PKI_DIR/etcd/ca.crt" \
		--cert "$PKI_DIR/apiserver-etcd-client.crt" --key "$PKI_DIR/apiserver-etcd-client.key" \
		"https://$NODE_IP:$ETCD_CLIENT_PORT/health")" ;;
	kube-apiserver) curl_pki "https://$NODE_IP:$APISERVER_PORT/readyz" ;;
	kube-controller-manager) curl -sfk --max-time 2 "https://$NODE_IP:$KCM_PORT/healthz" ;;
	kube-scheduler) curl -sfk --max-time 2 "https://$NODE_IP:$SCHEDULER_PORT/healthz" ;;
	kubelet) curl -sf --max-time 2 "http://$NODE_IP:$KUBELET_HEALTHZ_PORT/healthz" ;;
	kube-proxy) grep -q lastUpdated <<<"$(curl -s --max-time 2 "http://$NODE_IP:$PROXY_HEALTHZ_PORT/healthz")" ;;
	esac
}

# command_of NAME sets CMD to the command line of component NAME.
command_of() {
	local c=$STATE_DIR/config P=$PKI_DIR K=$KCFG_DIR
	case $1 in
	containerd) CMD=(containerd --config "$c/containerd.toml") ;;
	etcd) CMD=("$K8S_BIN" etcd --name "$CLUSTER_NAME" --data-dir "$STATE_DIR/etcd" \
		--listen-client-urls "https://$NODE_IP:$ETCD_CLIENT_PORT" --advertise-client-urls "https://$NODE_IP:$ETCD_CLIENT_PORT" \
		--listen-peer-urls "https://$NODE_IP:$ETCD_PEER_PORT" --initial-advertise-peer-urls "https://$NODE_IP:$ETCD_PEER_PORT" \
		--initial-cluster "$CLUSTER_NAME=https://$NODE_IP:$ETCD_PEER_PORT" --cert-file "$P/etcd/server.crt" --key-file "$P/etcd/server.key" --client-cert-auth --trusted-ca-file "$P/etcd/ca.crt" \
		--peer-cert-file "$P/etcd/peer.crt" --peer-key-file "$P/etcd/peer.key" --peer-client-cert-auth \
		--peer-trusted-ca-file "$P/etcd/ca.crt" --snapshot-count 10000 --log-level warn) ;;
	kube-apiserver) CMD=("$K8S_BIN" kube-apiserver --advertise-address "$NODE_IP" --bind-address "$NODE_IP" \
		--secure-port "$APISERVER_PORT" --allow-privileged=true --authorization-mode Node,RBAC \
		--client-ca-file "$P/ca.crt" --enable-admission-plugins NodeRestriction --enable-bootstrap-token-auth=true \
		--etcd-cafile "$P/etcd/ca.crt" --etcd-certfile "$P/apiserver-etcd-client.crt" --etcd-keyfile "$P/apiserver-etcd-client.key" \
		--etcd-servers "https://$NODE_IP:$ETCD_CLIENT_PORT" \
		--kubelet-client-certificate "$P/apiserver-kubelet-client.crt" --kubelet-client-key "$P/apiserver-kubelet-client.key" \
		--kubelet-preferred-address-types InternalIP \
		--proxy-client-cert-file "$P/front-proxy-client.crt" --proxy-client-key-file "$P/front-proxy-client.key" \
		--requestheader-allowed-names front-proxy-client --requestheader-client-ca-file "$P/front-proxy-ca.crt" \
		--requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-group-headers X-Remote-Group \
		--requestheader-username-headers X-Remote-User \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
		--service-cluster-ip-range "$SERVICE_CIDR" --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" \
		--profiling=false) ;;
	kube-controller-manager) CMD=("$K8S_BIN" kube-controller-manager --kubeconfig "$K/controller-manager.conf" \
		--authentication-kubeconfig "$K/controller-manager.conf" --authorization-kubeconfig "$K/controller-manager.conf" \
		--bind-address "$NODE_IP" --secure-port "$KCM_PORT" --client-ca-file "$P/ca.crt" --cluster-name "$CLUSTER_NAME" \
		--cluster-signing-cert-file "$P/ca.crt" --cluster-signing-key-file "$P/ca.key" \
		--controllers '*,bootstrapsigner,tokencleaner' --leader-elect=false \
		--requestheader-client-ca-file "$P/front-proxy-ca.crt" --root-ca-file "$P/ca.crt" \
		--service-account-private-key-file "$P/sa.key" --use-service-account-credentials=true \
		--allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
		--service-cluster-ip-range "$SERVICE_CIDR" --profiling=false) ;;
	kube-scheduler) CMD=("$K8S_BIN" kube-scheduler --kubeconfig "$K/scheduler.conf" \
		--authentication-kubeconfig "$K/scheduler.conf" --authorization-kubeconfig "$K/scheduler.conf" \
		--bind-address "$NODE_IP" --secure-port "$SCHEDULER_PORT" --leader-elect=false --profiling=false) ;;
	kubelet) CMD=("$K8S_BIN" kubelet --config "$c/kubelet.yaml" --kubeconfig "$K/kubelet.conf" \
		--hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --root-dir "$STATE_DIR/kubelet" \
		--cert-dir "$STATE_DIR/kubelet/pki") ;;
	kube-proxy) CMD=("$K8S_BIN" kube-proxy --config "$c/kube-proxy.yaml") ;;
	esac
}

COMPONENTS="containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

ensure_component() {
	local name=$1 pid
	if pid=$(pid_alive "$name"); then
		healthy "$name" >/dev/null 2>&1 && return 0
		# Running but unhealthy: give it a moment (it may be starting), then restart.
		local i
		for i in $(seq 30); do healthy "$name" >/dev/null 2>&1 && return 0; sleep 0.2; done
		log "$name (pid $pid) is running but unhealthy: restarting it"
		stop_components "$name"
	fi
	log "starting $name"
	command_of "$name"
	start_component "$name" "${CMD[@]}"
	wait_for "$name" 60 healthy "$name"
}

# --- cluster objects -------------------------------------------------------------

# ensure_images imports the pause and CoreDNS images, building their
# tarballs into the cache only the first time.
ensure_images() {
	local have
	have=$(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q)
	if ! grep -qx "$PAUSE_IMAGE" <<<"$have"; then
		log "importing $PAUSE_IMAGE"
		if [[ ! -f $CACHE_DIR/pause.tar ]]; then
			(cd "$here/../.." && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$CACHE_DIR/pause" ./hack/cluster/pause &&
				go run ./hack/image -tag "$PAUSE_IMAGE" -out "$CACHE_DIR/pause.tar" -add "$CACHE_DIR/pause:/pause" \
					-entrypoint /pause >/dev/null)
		fi
		ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$CACHE_DIR/pause.tar" >/dev/null
	fi
	if ! grep -qx "$COREDNS_IMAGE" <<<"$have"; then
		log "importing $COREDNS_IMAGE"
		if [[ ! -f $CACHE_DIR/coredns-$COREDNS_VERSION.tar ]]; then
			(cd "$here/../.." && go run ./hack/image -tag "$COREDNS_IMAGE" -out "$CACHE_DIR/coredns-$COREDNS_VERSION.tar" \
				-add "$COREDNS_BIN:/coredns" -entrypoint /coredns >/dev/null)
		fi
		ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$CACHE_DIR/coredns-$COREDNS_VERSION.tar" >/dev/null
	fi
}

ensure_objects() {
	"$K8S_BIN" kubectl --kubeconfig "$KCFG_DIR/super-admin.conf" apply -f "$STATE_DIR/config/bootstrap.yaml" >/dev/null
	kubectl_admin apply -f "$STATE_DIR/config/coredns.yaml" >/dev/null
}

check_ports_if_fresh() {
	pid_alive kube-apiserver >/dev/null || check_ports
}

check_ports_if_fresh
setup_network
render_configs
ensure_pki
ensure_cgroups
for c in $COMPONENTS; do ensure_component "$c"; done
ensure_images
ensure_objects
wait_for "node $NODE_NAME Ready" 60 sh -c "'$K8S_BIN' kubectl --kubeconfig '$KUBECONFIG_ADMIN' get node '$NODE_NAME' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -x True >/dev/null"
wait_for "CoreDNS" 90 kubectl_admin -n kube-system rollout status deployment/coredns --timeout=1s
mkdir -p "$CACHE_DIR/bin"
for c in kubectl kubeadm; do ln -sf "$K8S_BIN" "$CACHE_DIR/bin/$c"; done
log "cluster ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s (kubectl: $CACHE_DIR/bin/kubectl)"
echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
