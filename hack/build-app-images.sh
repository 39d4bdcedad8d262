#!/usr/bin/env bash
# Builds the demo and test application images (static Go binaries; Postgres
# from Debian's packages) and imports them into the local cluster's
# containerd. Usage: build-app-images.sh IMAGE...
# Names: staging-backend staging-frontend staging-postgres toolbox queue.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster/lib.sh"
root=$(cd "$here/.." && pwd)
cd "$root"
out=$root/bin/images
mkdir -p "$out"

import=()
if [[ ${DOPPEL_USE_EXISTING_CLUSTER:-} == 1 ]]; then
	log "DOPPEL_USE_EXISTING_CLUSTER=1: writing image tarballs to $out; load them into your cluster's nodes yourself"
elif [[ -S $CONTAINERD_SOCK ]]; then
	import=(-import "$CONTAINERD_SOCK")
else
	die "the local cluster is not running: run make cluster first"
fi

static() { # PKG OUT
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$2" "$1"
}

for name in "$@"; do
	case $name in
	staging-backend | staging-frontend)
		prog=${name#staging-}
		static "./test/apps/staging/$prog" "$out/$prog"
		go run ./hack/image -tag "doppel.local/$name:dev" -out "$out/$name.tar" \
			-add "$out/$prog:/$prog" -entrypoint "/$prog" "${import[@]}" >/dev/null
		;;
	staging-postgres)
		static ./test/apps/staging/postgres-init "$out/postgres-init"
		go run ./hack/image -tag "doppel.local/$name:dev" -out "$out/$name.tar" \
			-deb postgresql-15 -deb tzdata -add /bin/dash:/bin/sh \
			-exclude '/usr/lib/postgresql/*/lib/llvmjit*' -exclude '/usr/lib/postgresql/*/lib/bitcode' -add "$out/postgres-init:/postgres-init" \
			-account postgres:999:999:/var/lib/postgresql -mkdir /tmp:1777 -mkdir /var/run/postgresql:0777 \
			-mkdir /var/lib/postgresql:0777 -env PG_BIN=/usr/lib/postgresql/15/bin -entrypoint /postgres-init \
			-user 999:999 "${import[@]}" >/dev/null
		;;
	queue)
		static ./test/apps/queue "$out/queue"
		go run ./hack/image -tag "doppel.local/queue:dev" -out "$out/queue.tar" \
			-add "$out/queue:/queue" -entrypoint /queue "${import[@]}" >/dev/null
		;;
	toolbox)
		static ./test/apps/toolbox "$out/toolbox"
		go run ./hack/image -tag "doppel.local/toolbox:dev" -out "$out/toolbox.tar" \
			-add "$out/toolbox:/toolbox" -entrypoint /toolbox "${import[@]}" >/dev/null
		;;
	*) die "unknown image $name" ;;
	esac
	log "image doppel.local/$name:dev ready"
done
