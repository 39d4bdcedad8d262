#!/usr/bin/env bash
# Installs the end-to-end tier's tools into $DOPPEL_VSCODE_E2E_DIR
# (default: ~/.cache/doppel/vscode-e2e, beside the Makefile's other cached
# tools), from test/e2e/package.json:
# code-server 4.100.3 (VS Code 1.100.3, the newest line that runs on Node 20)
# and playwright-core (which drives Debian's /usr/bin/chromium; it never
# downloads a browser of its own).
#
# Needs the Debian packages chromium libkrb5-dev libx11-dev libxkbfile-dev
# libsecret-1-dev pkg-config ripgrep (the top Makefile's TEST_PACKAGES;
# `make deps`). Idempotent: does nothing when the install is complete.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${DOPPEL_VSCODE_E2E_DIR:-${DOPPEL_CACHE_DIR:-$HOME/.cache/doppel}/vscode-e2e}
# Why not test/e2e/node_modules: the debuggee runs under doppel, whose file
# rules read unknown directories from the pod; js-debug's bootloader
# (NODE_OPTIONS=--require <VS Code>/extensions/ms-vscode.js-debug/...) must
# be local, as it is where VS Code really lives (~/.vscode-server, /usr/share,
# /opt, a home dot-directory). See docs/vscode.md.
mkdir -p "$dir"
cp "$here/package.json" "$dir/package.json"
cd "$dir"

want=4.100.3
cs=node_modules/code-server
if [[ -x $cs/out/node/entry.js || -f $cs/out/node/entry.js ]] &&
	[[ $(node -p "require('./$cs/package.json').version" 2>/dev/null) == "$want" ]] &&
	[[ -f $cs/lib/vscode/node_modules/@vscode/ripgrep/bin/rg ]] &&
	[[ -d node_modules/playwright-core ]]; then
	exit 0
fi

for p in /usr/bin/rg /usr/bin/chromium; do
	[[ -x $p ]] || { echo "setup.sh: $p is missing: make deps (Debian packages ripgrep, chromium)" >&2; exit 1; }
done

# @vscode/ripgrep's postinstall downloads rg from GitHub, which this machine
# (and CI) cannot reach. It first looks in its cache directory under the temp
# dir: put Debian's rg there, packed the way the release tarball is.
tmp=${TMPDIR:-/tmp}
for v in 1.15.11 1.15.10 1.15.9; do
	cache=$tmp/vscode-ripgrep-cache-$v
	mkdir -p "$cache"
	for asset in ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz ripgrep-v13.0.0-13-x86_64-unknown-linux-musl.tar.gz; do
		if [[ ! -s $cache/$asset ]]; then
			d=$(mktemp -d)
			cp /usr/bin/rg "$d/rg"
			tar -C "$d" -czf "$cache/$asset" rg
			rm -rf "$d"
		fi
	done
done

# code-server's postinstall runs npm installs of its own (lib/vscode) that
# run native builds as root: unsafe_perm, no prompts, scripts allowed.
export npm_config_unsafe_perm=true npm_config_yes=true
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
npm install --no-save --no-package-lock --foreground-scripts=false
if [[ ! -f $cs/lib/vscode/node_modules/@vscode/ripgrep/bin/rg ]]; then
	mkdir -p "$cs/lib/vscode/node_modules/@vscode/ripgrep/bin"
	cp /usr/bin/rg "$cs/lib/vscode/node_modules/@vscode/ripgrep/bin/rg"
fi
node -e "require('./node_modules/playwright-core')"
"$cs/out/node/entry.js" --version >/dev/null 2>&1 || node "$cs/out/node/entry.js" --version
