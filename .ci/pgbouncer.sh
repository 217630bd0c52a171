#!/usr/bin/env bash
# Provides a pgbouncer that keeps prepared statements working in transaction pooling (1.21 or later, with
# `max_prepared_statements`) for the tests, and prints the path of its binary:
#
# 1. the system's `pgbouncer` (PATH, /usr/sbin), when it is 1.21 or newer;
# 2. else target/pgbouncer-1.24.1/bin/pgbouncer, built once from Debian trixie's source package (upstream 1.24.1
#    plus Debian's security patches). The .dsc is pinned by its SHA-256 below; the tarballs are checked against
#    the checksums it lists. A second run finds the build and does nothing.
#
# Debian bookworm ships pgbouncer 1.18, which cannot carry prepared statements across server connections, so on
# bookworm this builds. Build dependencies (Debian): gcc make pkg-config libevent-dev libssl-dev libc-ares-dev,
# plus curl, xz-utils and patch; installed with apt-get when missing and we are root.
#
# When Debian replaces this revision (the pool keeps only current ones, and the download then fails), take the
# new one: `apt-get source --download-only pgbouncer/trixie` with a trixie deb-src line, then update the
# revision and the .dsc's SHA-256 here.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.24.1
REVISION=1+deb13u2
DSC_SHA256=dc1bc121e10a7ac2da987e72bb13798c94a7ff162ddc480d93a3f93c19b637a7
POOL=http://deb.debian.org/debian/pool/main/p/pgbouncer

# "PgBouncer 1.18.0" -> success when at least 1.21.
new_enough() {
  local version
  version="$("$1" --version 2>/dev/null | awk '/^PgBouncer /{print $2; exit}')" || return 1
  [ -n "$version" ] || return 1
  local major minor
  IFS=. read -r major minor _ <<<"$version"
  [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 21 ]; }
}

for candidate in "$(command -v pgbouncer || true)" /usr/sbin/pgbouncer; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && new_enough "$candidate"; then
    echo "$candidate"
    exit 0
  fi
done

target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
prefix="$target/pgbouncer-$VERSION"
if [ -x "$prefix/bin/pgbouncer" ] && new_enough "$prefix/bin/pgbouncer"; then
  echo "$prefix/bin/pgbouncer"
  exit 0
fi

echo "building pgbouncer $VERSION into $prefix (the system has none of 1.21 or later)" >&2

missing=()
for pkg in gcc make pkg-config libevent-dev libssl-dev libc-ares-dev curl xz-utils patch; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "missing build dependencies: ${missing[*]} (install them, e.g. with apt-get)" >&2
    exit 1
  fi
fi

work="$target/pgbouncer-build"
rm -rf "$work"
mkdir -p "$work"
cd "$work"

dsc="pgbouncer_$VERSION-$REVISION.dsc"
curl -fsS -o "$dsc" "$POOL/$dsc"
echo "$DSC_SHA256  $dsc" | sha256sum -c --quiet - >&2
# The .dsc lists "<sha256> <size> <file>" under Checksums-Sha256; fetch and check each file it names.
awk '/^Checksums-Sha256:/{on=1; next} /^[^ ]/{on=0} on && NF==3 {print $1"  "$3}' "$dsc" >SHA256SUMS
[ "$(wc -l <SHA256SUMS)" -eq 2 ] || { echo "unexpected file list in $dsc" >&2; exit 1; }
while read -r _ file; do
  curl -fsS -o "$file" "$POOL/$file"
done <SHA256SUMS
sha256sum -c --quiet SHA256SUMS >&2

tar xzf "pgbouncer_$VERSION.orig.tar.gz"
cd "pgbouncer-$VERSION"
tar xJf "../pgbouncer_$VERSION-$REVISION.debian.tar.xz"
grep -v '^\s*\(#\|$\)' debian/patches/series | while read -r patch_name; do
  patch -p1 --quiet <"debian/patches/$patch_name"
done
./configure --prefix="$prefix" --without-pam --without-systemd >configure.log 2>&1 ||
  { tail -n 30 configure.log >&2; exit 1; }
make -j"$(nproc)" >make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
# Install into a staging folder, then move it into place: never a half-installed prefix.
make install DESTDIR="$work/stage" >install.log 2>&1 || { tail -n 30 install.log >&2; exit 1; }
"$work/stage$prefix/bin/pgbouncer" --version >&2
rm -rf "$prefix"
mv "$work/stage$prefix" "$prefix"
cd "$target"
rm -rf "$work"
echo "$prefix/bin/pgbouncer"
