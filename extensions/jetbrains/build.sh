#!/usr/bin/env bash
# Builds the JetBrains plugin's plain Kotlin core and runs its tests against the real helper.
# Idempotent: installs the Kotlin compiler from npm into the cache once, recompiles only when
# sources changed. Prints "N passed, N failed"; exits non-zero when a test failed.
#
#   extensions/jetbrains/build.sh            compile and test
#   extensions/jetbrains/build.sh compile    compile only
#
# Environment: DOPPEL_BIN (the doppel binary; default bin/doppel, built when missing),
# KUBECONFIG (the cluster listTargets is tested against; default the local cluster's),
# DOPPEL_CACHE_DIR (default ~/.cache/doppel), KOTLIN_COMPILER_VERSION.
# Needs Java 17+, npm, and the Debian packages libgoogle-gson-java and junit5.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${DOPPEL_CACHE_DIR:-$HOME/.cache/doppel}
kver=${KOTLIN_COMPILER_VERSION:-2.4.20}
kdir=$cache/kotlin
kotlinc=$kdir/node_modules/kotlin-compiler/bin/kotlinc
klib=$kdir/node_modules/kotlin-compiler/lib
out=${JETBRAINS_BUILD_DIR:-$here/build}
java_share=/usr/share/java

die() { echo "build.sh: $*" >&2; exit 1; }

# The Kotlin compiler: npm's kotlin-compiler package (the full compiler; runs on Java 17).
if [[ ! -x $kotlinc ]] || ! grep -q "\"version\": \"$kver\"" "$kdir/node_modules/kotlin-compiler/package.json" 2>/dev/null; then
	command -v npm >/dev/null || die "npm is missing (it installs the Kotlin compiler)"
	echo "installing kotlin-compiler@$kver into $kdir"
	mkdir -p "$kdir"
	npm install --silent --no-audit --no-fund --prefix "$kdir" "kotlin-compiler@$kver" >/dev/null
	chmod +x "$kdir"/node_modules/kotlin-compiler/bin/* 2>/dev/null || true
fi

for jar in gson.jar junit-jupiter-api.jar junit-platform-console-standalone.jar; do
	[[ -f $java_share/$jar ]] || die "$java_share/$jar is missing: apt-get install libgoogle-gson-java junit5"
done
gson=$java_share/gson.jar
junit_api=$java_share/junit-jupiter-api.jar:$java_share/opentest4j.jar:$java_share/apiguardian-api.jar:$java_share/junit-platform-commons.jar
console=$java_share/junit-platform-console-standalone.jar

main_src=$here/core/src/main/kotlin
test_src=$here/core/src/test/kotlin
mkdir -p "$out"

# compile NAME SRC_DIR CLASSPATH: recompiles when the sources (or the compiler) changed.
compile() {
	local name=$1 src=$2 cp=$3
	shift 3
	local dest=$out/$name stamp=$out/$name.stamp sum
	sum=$( (echo "$kver $cp"; find "$src" -name '*.kt' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)
	if [[ -f $stamp && $(cat "$stamp") == "$sum" && -d $dest ]]; then
		return 0
	fi
	echo "compiling $name"
	rm -rf "$dest" "$stamp"
	mkdir -p "$dest"
	# One JVM, small heap: the machine is shared.
	JAVA_OPTS="-Xmx768m" "$kotlinc" -jvm-target 17 -nowarn -no-reflect "$@" -cp "$cp" -d "$dest" $(find "$src" -name '*.kt' | sort)
	echo "$sum" >"$stamp"
}

compile core-classes "$main_src" "$gson"
# Tests see the core's internals, as Gradle's test source set does.
compile test-classes "$test_src" "$out/core-classes:$gson:$junit_api:$klib/kotlin-stdlib.jar" -Xfriend-paths="$out/core-classes"
[[ ${1:-} == compile ]] && exit 0

# The helper.
helper=${DOPPEL_BIN:-$repo/bin/doppel}
if [[ ! -x $helper ]]; then
	command -v go >/dev/null || die "$helper is missing and go is not installed to build it"
	echo "building $helper"
	(cd "$repo" && go build -o "$helper" ./helper)
fi
export DOPPEL_BIN=$helper
export KUBECONFIG=${KUBECONFIG:-/var/lib/doppel-cluster/kubeconfig/admin.conf}

log=$out/test-output.txt
set +e
java -Xmx256m -jar "$console" \
	--class-path "$out/test-classes:$out/core-classes:$gson:$klib/kotlin-stdlib.jar" \
	--scan-class-path "$out/test-classes" \
	--disable-banner --disable-ansi-colors --details=tree --details-theme=ascii --reports-dir "$out/test-reports" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

count() { sed -nE "s/^\[ *([0-9]+) tests $1 *\]$/\1/p" "$log" | head -1; }
passed=$(count successful)
failed=$(count failed)
aborted=$(count aborted)
skipped=$(count skipped)
echo "${passed:-0} passed, ${failed:-0} failed"
if [[ ${aborted:-0} != 0 || ${skipped:-0} != 0 ]]; then
	echo "(${skipped:-0} skipped, ${aborted:-0} aborted by an assumption)"
fi
if [[ $rc != 0 || ${failed:-0} != 0 || -z $passed ]]; then
	exit 1
fi
