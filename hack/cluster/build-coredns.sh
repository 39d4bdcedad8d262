#!/usr/bin/env bash
# Builds CoreDNS (a static binary) into the cache once. Prints its path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
out="$CACHE_DIR/coredns-$COREDNS_VERSION/coredns"
if [[ -x $out ]]; then
	echo "$out"
	exit 0
fi
log "building CoreDNS $COREDNS_VERSION (~4 min on a cold cache)"
mkdir -p "$(dirname "$out")"
GOBIN="$(dirname "$out")" CGO_ENABLED=0 GOFLAGS=-trimpath go install -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
echo "$out"
