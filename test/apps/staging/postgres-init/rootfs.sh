#!/usr/bin/env bash
# Assembles the root filesystem of the staging Postgres image from this
# machine's Debian postgresql-15 package, so the image and the tests that
# exercise it use one definition of "what the image contains".
#
# usage: rootfs.sh DEST [POSTGRES_INIT_BINARY]
#
# DEST ends up holding: the server files of postgresql-15 (minus docs,
# translations and the LLVM JIT, which would pull in ~100 MB of libLLVM and is
# only an optimisation), every shared library they load (ldd closure),
# time zone data, /bin/sh (dash), /etc/passwd + /etc/group naming uid/gid 999 "postgres",
# /tmp (1777) for the socket and initdb's password file, and the data
# directory's parent. The container runtime supplies /dev, /proc and /etc/hosts.
set -euo pipefail

dest=${1:?usage: rootfs.sh DEST [POSTGRES_INIT_BINARY]}
init_bin=${2:-}
pg=/usr/lib/postgresql/15

if [[ ! -x $pg/bin/postgres || ! -x $pg/bin/initdb ]]; then
	echo "rootfs.sh: $pg/bin/{postgres,initdb} missing: apt-get install postgresql-15" >&2
	exit 1
fi

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

# Debian 12 is usr-merged; keep the same layout so the paths baked into the
# binaries (ELF interpreter /lib64/..., library paths) resolve unchanged.
mkdir -p "$dest/usr/bin" "$dest/usr/lib" "$dest/usr/lib64"
for d in bin lib lib64; do
	[[ -e $dest/$d ]] || ln -s "usr/$d" "$dest/$d"
done

# copy SRC: copies SRC to the same path in DEST, dereferenced, with the
# /lib -> /usr/lib merge applied.
copy() {
	local src=$1 rel
	rel=${src#/}
	case $rel in
	lib/* | lib64/* | bin/*) rel=usr/$rel ;;
	esac
	mkdir -p "$dest/$(dirname "$rel")"
	cp -L --preserve=mode "$src" "$dest/$rel"
}

# Server programs and data files. Only initdb and postgres are run; the
# other client-side tools of the package are left out.
elves=("$pg/bin/initdb" "$pg/bin/postgres" /usr/bin/dash)
copy "$pg/bin/initdb"
copy "$pg/bin/postgres"
while IFS= read -r f; do
	case $f in
	*/llvmjit*.so) continue ;;
	esac
	copy "$f"
	elves+=("$f")
done < <(find "$pg/lib" -maxdepth 1 -name '*.so' -type f)
mkdir -p "$dest/usr/share/postgresql"
cp -a /usr/share/postgresql/15 "$dest/usr/share/postgresql/"

# Time zone data (Debian builds Postgres --with-system-tzdata). Without it
# the server still runs, on the POSIX zone "UTC0", but logs a warning on every
# start and rejects clients that send TimeZone=UTC (JDBC, for one).
if [[ ! -d /usr/share/zoneinfo ]]; then
	echo "rootfs.sh: /usr/share/zoneinfo missing: apt-get install tzdata" >&2
	exit 1
fi
cp -a /usr/share/zoneinfo "$dest/usr/share/"

# initdb runs the server through popen(), i.e. /bin/sh -c.
copy /usr/bin/dash
ln -sf dash "$dest/usr/bin/sh"

# Shared libraries, including the dynamic loader itself.
ldd "${elves[@]}" 2>/dev/null |
	awk '/=> \// { print $3 } /^[[:space:]]*\/[^ ]*ld-linux/ { print $1 }' |
	sort -u |
	while IFS= read -r lib; do copy "$lib"; done

# initdb and postgres look up their own uid (getpwuid) and refuse to run
# without a passwd entry. glibc 2.36 has the files NSS backend built in, so no
# nsswitch.conf or libnss_files is needed.
mkdir -p "$dest/etc"
echo 'postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh' >"$dest/etc/passwd"
echo 'postgres:x:999:' >"$dest/etc/group"

install -d -m 1777 "$dest/tmp"
install -d -m 0755 "$dest/var/lib/postgresql"

if [[ -n $init_bin ]]; then
	install -m 0755 "$init_bin" "$dest/postgres-init"
fi
