#!/usr/bin/env bash
# Removes the local cluster: exactly what up.sh created — its processes,
# containers, mounts, network namespaces, bridges, routes, rules, chains,
# cgroups, sysctl changes and state — and nothing else. The build cache
# (binaries, image tarballs) stays. Safe to run on a half-torn-down cluster.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need_root

# Kubernetes components first, so nothing restarts what we remove next.
for c in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
	stop_component "$c"
done

# Containers: kill every task of our containerd, then containerd itself.
if pid_alive containerd >/dev/null; then
	for ns in $(ctr --address "$CONTAINERD_SOCK" namespaces ls -q 2>/dev/null); do
		for t in $(ctr --address "$CONTAINERD_SOCK" -n "$ns" tasks ls -q 2>/dev/null); do
			ctr --address "$CONTAINERD_SOCK" -n "$ns" tasks kill -s SIGKILL "$t" >/dev/null 2>&1
		done
	done
	sleep 0.5
fi
stop_component containerd

# Shims our containerd started (they outlive it by design): found by the
# address they were given, ended by pid.
for p in /proc/[0-9]*; do
	cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
	if [[ $cmd == *containerd-shim* && $cmd == *"$CONTAINERD_SOCK"* ]]; then
		kill -KILL "${p#/proc/}" 2>/dev/null
	fi
done
# Container processes left by a killed shim: anything still in our cgroups.
for h in /sys/fs/cgroup/*/; do
	[[ -d $h$CGROUP_ROOT ]] || continue
	find "$h$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do
		kill -KILL "$pid" 2>/dev/null
	done
done
sleep 0.3

# Mounts under our directories, deepest first.
for dir in "$STATE_DIR" "$RUN_DIR"; do
	awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
done

# cgroups, deepest first.
for h in /sys/fs/cgroup/*/; do
	[[ -d $h$CGROUP_ROOT ]] || continue
	find "$h$CGROUP_ROOT" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# Network.
ip link del "$POD_BRIDGE" 2>/dev/null
ip link del "$NODE_BRIDGE" 2>/dev/null
# Veths whose pod namespaces are gone have gone with them; any left over
# were attached to our pod bridge and are gone with it too.
ip route del "$SERVICE_CIDR" 2>/dev/null
ip route flush table "$ROUTE_TABLE" 2>/dev/null
while ip rule del priority "$RULE_PRIORITY" 2>/dev/null; do :; done

# iptables: kube-proxy's own cleanup, then the portmap chains of our CNI
# network, then our guard chain.
if [[ -x ${K8S_BIN:=$(ls -t "$CACHE_DIR"/k8s-*/k8s 2>/dev/null | head -1)} ]]; then
	"$K8S_BIN" kube-proxy --cleanup >/dev/null 2>&1
fi
for table in nat filter mangle; do
	# Rules that carry our CNI network's name, and the per-container chains they use.
	iptables-save -t "$table" 2>/dev/null | grep -- "\"$CNI_NETWORK\"" | sed -n 's/^-A \([^ ]*\) \(.*\)$/\1 \2/p' |
		while read -r chain rule; do
			eval "iptables -w -t $table -D $chain $rule" 2>/dev/null
		done
	for chain in $(iptables-save -t "$table" 2>/dev/null | sed -n 's/^:\(CNI-DN-[^ ]*\|CNI-[0-9a-f]\{24\}\) .*/\1/p'); do
		# Only chains no rule refers to any more: ours lost their jumps above.
		iptables-save -t "$table" | grep -q -- "-j $chain\b" && continue
		iptables -w -t "$table" -F "$chain" 2>/dev/null && iptables -w -t "$table" -X "$chain" 2>/dev/null
	done
	for chain in CNI-HOSTPORT-DNAT CNI-HOSTPORT-SETMARK CNI-HOSTPORT-MASQ; do
		# Shared portmap chains: remove only when nothing else uses them.
		iptables-save -t "$table" 2>/dev/null | grep -q "^-A $chain " && continue
		iptables-save -t "$table" 2>/dev/null | grep -q "^:$chain " || continue
		iptables-save -t "$table" | grep "\-j $chain\b" | sed -n 's/^-A \([^ ]*\) \(.*\)$/\1 \2/p' |
			while read -r c rule; do eval "iptables -w -t $table -D $c $rule" 2>/dev/null; done
		iptables -w -t "$table" -X "$chain" 2>/dev/null
	done
done
while iptables -w -t filter -D FORWARD -j "$GUARD_CHAIN" 2>/dev/null; do :; done
iptables -w -t filter -F "$GUARD_CHAIN" 2>/dev/null
iptables -w -t filter -X "$GUARD_CHAIN" 2>/dev/null

# Sysctls back to what they were before the cluster.
if [[ -f $STATE_DIR/sysctl.saved ]]; then
	while IFS='=' read -r key value; do
		f=/proc/sys/${key//.//}
		[[ -w $f ]] && echo "$value" >"$f"
	done <"$STATE_DIR/sysctl.saved"
fi

rm -rf "$STATE_DIR" "$RUN_DIR"
log "cluster removed"
