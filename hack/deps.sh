#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are missing.
# The cluster's own packages are installed by hack/cluster/up.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster/lib.sh"
if [[ $(id -u) != 0 ]]; then
	for p in "$@"; do
		grep -q "install ok installed" <<<"$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" ||
			die "Debian package $p is missing and installing it needs root: sudo apt-get install $p"
	done
	exit 0
fi
ensure_packages "$@"
