#!/usr/bin/env bash
# The staging demo: deploys the three-tier staging application (frontend,
# backend, PostgreSQL) to namespace `staging`, shows it answering through a
# port-forward, adds a video through the frontend and lists it back.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster/lib.sh"
root=$(cd "$here/.." && pwd)

if [[ ${DOPPEL_USE_EXISTING_CLUSTER:-} == 1 ]]; then
	kubectl=(kubectl)
else
	kubectl=("$CACHE_DIR/bin/kubectl" --kubeconfig "$KUBECONFIG_ADMIN")
	export KUBECONFIG=$KUBECONFIG_ADMIN
fi
k() { "${kubectl[@]}" "$@"; }

log "deploying the staging stack (namespace staging)"
k apply -f "$root/test/apps/staging/manifests/staging.yaml" >/dev/null
for d in postgres backend frontend; do
	k -n staging rollout status "deployment/$d" --timeout=120s >/dev/null
done
k -n staging get pods -o wide

port=${DEMO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
k -n staging port-forward --address 127.0.0.1 svc/frontend "$port:80" >/dev/null 2>&1 &
pf=$!
trap 'kill $pf 2>/dev/null || true' EXIT
url=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done

# The page needs the backend behind its Service: on a fresh cluster
# kube-proxy may program the new endpoints a moment after the rollout.
page=
for _ in $(seq 150); do page=$(curl -sf "$url/?user=demo") && break; sleep 0.2; done
[[ -n $page ]] || die "the frontend does not answer its page through the backend (k -n staging logs deploy/frontend)"
log "frontend page header:"
sed -n 's:.*<h1>\(.*\)</h1>.*:  \1:p' <<<"$page"
id=demo-$(date +%s)
curl -sf -X POST --data-urlencode "id=$id" --data-urlencode "title=Added by make demo" "$url/add" >/dev/null
log "videos listed by the frontend (from PostgreSQL in the cluster):"
videos=$(curl -sf "$url/videos")
grep -o "$id" <<<"$videos" | sed -n '1s/^/  /p'
grep -q "$id" <<<"$(curl -sf "$url/videos")" || die "the video added through the frontend is not listed"

# The main job: the staging backend runs on this machine as if it ran in
# its pod — the pod's DB credentials, the cluster's DNS and PostgreSQL.
if [[ -x $root/bin/doppel ]]; then
	log "running the backend locally under doppel (target deployment/backend in staging)"
	# It listens on the pod's PORT (8080); where 8080 is taken on this
	# machine the layer moves it, and --report-listen says where.
	listen=$root/bin/demo-backend.listen
	rm -f "$listen"
	(cd "$root/test/apps/staging" && exec "$root/bin/doppel" exec -n staging --target deployment/backend \
		--report-listen "$listen" -- "$root/bin/images/backend") >"$root/bin/demo-backend.log" 2>&1 &
	dp=$!
	trap 'kill $pf 2>/dev/null || true; kill -INT $dp 2>/dev/null || true' EXIT
	for _ in $(seq 300); do [[ -s $listen ]] && break; sleep 0.1; done
	bport=$(awk -F'"actual":"' 'NF > 1 { split($2, a, "\""); n = split(a[1], b, ":"); print b[n]; exit }' "$listen")
	for _ in $(seq 100); do curl -sf "localhost:$bport/" >/dev/null && break; sleep 0.1; done
	curl -sf "localhost:$bport/" >/dev/null || { cat "$root/bin/demo-backend.log"; die "the local backend did not come up"; }
	sed -n 's/^doppel: /  doppel: /p' "$root/bin/demo-backend.log"
	log "the local backend's env came from the pod: it reads the cluster's PostgreSQL:"
	rows=$(curl -sf "localhost:$bport/videos")
	echo "  ${rows:0:300}"
	echo
	lid=local-$(date +%s)
	curl -sf -X POST "localhost:$bport/video?id=$lid&title=Written+by+the+local+backend" >/dev/null
	grep -q "$lid" <<<"$(curl -sf "$url/videos")" || die "the cluster's frontend does not list the row the local backend wrote"
	log "a video written by the local backend ($lid) is listed by the cluster's frontend"
	kill -INT "$dp"
	wait "$dp" 2>/dev/null || true

	log "stealing alice's requests: the local backend under a path_filter (test/apps/staging/doppel-alice.yaml)"
	GREETING="Hello from the laptop of alice" "$root/bin/doppel" exec -f "$root/test/apps/staging/doppel-alice.yaml" \
		-- "$root/bin/images/backend" >"$root/bin/demo-steal.log" 2>&1 &
	dp=$!
	for _ in $(seq 600); do grep -q 'of the target: steal (filtered)' "$root/bin/demo-steal.log" && break; sleep 0.1; done
	grep -q 'of the target: steal (filtered)' "$root/bin/demo-steal.log" || { cat "$root/bin/demo-steal.log"; die "the steal did not start"; }
	sed -n 's/^doppel: \(port .*\)/  doppel: \1/p' "$root/bin/demo-steal.log"
	for user in alice bob; do
		header=$(curl -sf "$url/?user=$user" | sed -n 's:.*<h1>\(.*\)</h1>.*:\1:p')
		echo "  the cluster's frontend for $user: $header"
	done
	curl -sf "$url/?user=alice" | grep -q "laptop" || die "alice's request did not reach the local backend"
	curl -sf "$url/?user=bob" | grep -q "laptop" && die "bob's request reached the local backend"
	kill -INT "$dp"
	wait "$dp" 2>/dev/null || true
fi

echo
echo "The staging stack answers at $url (frontend, port-forwarded)."
echo "  export KUBECONFIG=$KUBECONFIG_ADMIN"
if [[ -t 0 ]]; then
	echo "Press Ctrl-C to stop the port-forward."
	wait "$pf"
fi
