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
stop_components kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd

# Containers: kill every task of our containerd, then containerd itself.
# containerd 1.6 puts shim sockets at a hard-coded place, named by the hash
# of address/namespace/container: note ours to remove them afterwards.
shim_sockets=() # and other per-container files outside our directories
if pid_alive containerd >/dev/null; then
	for ns in $(ctr --address "$CONTAINERD_SOCK" namespaces ls -q 2>/dev/null); do
		for id in $(ctr --address "$CONTAINERD_SOCK" -n "$ns" containers ls -q 2>/dev/null); do
			shim_sockets+=("/run/containerd/s/$(printf '%s' "$CONTAINERD_SOCK/$ns/$id" | sha256sum | cut -d' ' -f1)")
			# containerd's CRI caches a CNI result per sandbox for its loopback network.
			shim_sockets+=("/var/lib/cni/results/cni-loopback-$id-lo")
		done
		for t in $(ctr --address "$CONTAINERD_SOCK" -n "$ns" tasks ls -q 2>/dev/null); do
			ctr --address "$CONTAINERD_SOCK" -n "$ns" tasks kill -s SIGKILL "$t" >/dev/null 2>&1
		done
	done
	sleep 0.5
fi
stop_components containerd

# Shims our containerd started (they outlive it by design): found by the
# address they were given, ended by pid.
for p in /proc/[0-9]*; do
	cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
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

rm -f "${shim_sockets[@]}" /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null
# Shim sockets whose containers containerd no longer lists: shims killed
# with the rest of an earlier cluster (a CI runner ending every process)
# leave their sockets, and the containers are gone from the metadata when
# the cluster comes back. Any socket there that nothing listens on and that
# is newer than this cluster is one of ours, and useless.
if [[ -d /run/containerd/s && -f $STATE_DIR/created-dirs ]]; then
	listening=$(ss -Hxl 2>/dev/null | awk '{print $5}')
	for sock in /run/containerd/s/*; do
		[[ -S $sock && $sock -nt $STATE_DIR/created-dirs ]] || continue
		grep -qxF "$sock" <<<"$listening" || rm -f "$sock"
	done
fi
# Shared directories the cluster created (see up.sh) go when empty.
if [[ -f $STATE_DIR/created-dirs ]]; then
	while read -r d; do rmdir "$d" 2>/dev/null; done <"$STATE_DIR/created-dirs"
fi

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

# iptables, both families: kube-proxy's own cleanup, then every KUBE-*
# chain kubelet and kube-proxy made (canaries, firewall, hints), then the
# portmap rules and chains of our CNI network, then our guard chain.
if [[ -x ${K8S_BIN:=$(ls -t "$CACHE_DIR"/k8s-*/k8s 2>/dev/null | head -1)} ]]; then
	"$K8S_BIN" kube-proxy --cleanup >/dev/null 2>&1
fi
delete_rules() { # IPTABLES TABLE: deletes the -A lines read from stdin
	local line
	while read -r line; do
		eval "$1 -w -t $2 -D ${line#-A }" 2>/dev/null
	done
}
for ipt in iptables ip6tables; do
	for table in filter nat mangle; do
		dump=$("$ipt-save" -t "$table" 2>/dev/null) || continue
		grep -E '^-A [^ ]+ .*-j KUBE-' <<<"$dump" | grep -v '^-A KUBE-' | delete_rules "$ipt" "$table"
		grep -F -- "$CNI_NETWORK" <<<"$dump" | delete_rules "$ipt" "$table"
		dump=$("$ipt-save" -t "$table")
		chains=$(sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p' <<<"$dump")
		# Per-container CNI chains no rule jumps to any more: ours lost their jumps above.
		for chain in $(sed -n 's/^:\(CNI-DN-[^ ]*\|CNI-[0-9a-f]\{24\}\) .*/\1/p' <<<"$dump"); do
			grep -q -- "-j $chain\b" <<<"$dump" || chains+=" $chain"
		done
		# Shared portmap chains go only when nothing else uses them.
		for chain in CNI-HOSTPORT-DNAT CNI-HOSTPORT-SETMARK CNI-HOSTPORT-MASQ; do
			grep -q "^:$chain " <<<"$dump" || continue
			grep -q "^-A $chain " <<<"$dump" && continue
			grep -E "^-A [^ ]+ .*-j $chain\b" <<<"$dump" | delete_rules "$ipt" "$table"
			chains+=" $chain"
		done
		for chain in $chains; do "$ipt" -w -t "$table" -F "$chain" 2>/dev/null; done
		for chain in $chains; do "$ipt" -w -t "$table" -X "$chain" 2>/dev/null; done
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
