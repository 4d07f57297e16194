#!/bin/bash
# mkrootfs.sh ARCH OUTPUT.tar
#
# Builds the kabuild "debian" flavor root filesystem (Debian bookworm + makepkg) for
# ARCH (arm64 | amd64) as a tar suitable for `docker import`, plus OUTPUT.packages.txt
# (sorted "package version" lines of everything installed).
#
# Everything that defines the image is in recipe.yaml beside this script and in
# ../common/ (kabuild-build, makepkg.conf, install-contract.sh).
# A foreign ARCH runs through qemu-user via binfmt_misc (host-setup.sh binfmt).
# Run as root (mmdebstrap --mode=root). Needs: mmdebstrap, arch-test, qemu-user-static.
#
# Import (see containers/README.md for the full command):
#   docker import --platform linux/ARCH --change 'USER 1000:1000' --change 'WORKDIR /build' \
#     --change 'ENV PATH=...' --change 'ENV LANG=C.UTF-8' --change 'CMD ["/usr/local/bin/kabuild-build"]' \
#     OUTPUT.tar kabuild/debian:ARCH
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
COMMON=$(cd "$HERE/../common" && pwd)
RECIPE=$HERE/recipe.yaml  # read by recipe-lib.sh
export RECIPE

say() { printf 'kabuild-mkrootfs: %s\n' "$*" >&2; }
die() { printf 'kabuild-mkrootfs: ERROR: %s\n' "$*" >&2; exit 1; }

[ $# -eq 2 ] || { echo "usage: $0 ARCH(arm64|amd64) OUTPUT.tar" >&2; exit 2; }
ARCH=$1
OUTPUT=$2
case "$ARCH" in arm64|amd64) ;; *) die "ARCH must be arm64 or amd64, got '$ARCH'";; esac
case "$OUTPUT" in *.tar) ;; *) die "OUTPUT must end in .tar";; esac
[ "$(id -u)" -eq 0 ] || die "must run as root"
command -v mmdebstrap >/dev/null || die "mmdebstrap missing (containers/host-setup.sh deps)"

# shellcheck source=../common/recipe-lib.sh
. "$COMMON/recipe-lib.sh"
need() { recipe_scalar "$1" || die "recipe.yaml: no key '$1'"; }

SUITE=$(need suite)
MIRROR=$(need mirror)
COMPONENTS=$(need components)
VARIANT=$(need variant)
SDE=$(need source_date_epoch)
CHOST=$(need "chost_$ARCH")
mapfile -t INCLUDE < <(recipe_list include)
mapfile -t PATH_EXCLUDE < <(recipe_list path_exclude)
mapfile -t PATH_INCLUDE < <(recipe_list path_include)
[ "${#INCLUDE[@]}" -gt 0 ] || die "recipe.yaml: empty include list"

if [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
  command -v arch-test >/dev/null && { arch-test "$ARCH" >/dev/null 2>&1 \
    || die "cannot run $ARCH binaries: run containers/host-setup.sh binfmt"; }
fi

DPKGOPTS=()
for p in "${PATH_EXCLUDE[@]}"; do DPKGOPTS+=(--dpkgopt="path-exclude=$p"); done
for p in "${PATH_INCLUDE[@]}"; do DPKGOPTS+=(--dpkgopt="path-include=$p"); done

OUTPUT=$(realpath -m "$OUTPUT")
mkdir -p "$(dirname "$OUTPUT")"
PKGLIST=${OUTPUT%.tar}.packages.txt
TMP_OUT=$OUTPUT.tmp.$$
TMP_LIST=$PKGLIST.tmp.$$
trap 'rm -f "$TMP_OUT" "$TMP_LIST"' EXIT

include_csv=$(IFS=,; echo "${INCLUDE[*]}")
say "building $SUITE/$ARCH ($VARIANT + ${#INCLUDE[@]} packages) from $MIRROR -> $OUTPUT"
start=$(date +%s)

# Hooks run on the host with "$1" = the chroot directory.
#  1. the kabuild contract (kabuild-build, makepkg.conf, users, /build, locales)
#  2. reproducibility cleanup: files mmdebstrap copies from the host or that carry
#     build-time state (docker bind-mounts its own hostname/hosts/resolv.conf anyway)
#  3. the package list
SOURCE_DATE_EPOCH=$SDE mmdebstrap \
  --mode=root \
  --format=tar \
  --variant="$VARIANT" \
  --architectures="$ARCH" \
  --components="$COMPONENTS" \
  --include="$include_csv" \
  "${DPKGOPTS[@]}" \
  --aptopt='Acquire::Languages "none"' \
  --customize-hook="'$COMMON/install-contract.sh' \"\$1\" '$ARCH' '$CHOST'" \
  --customize-hook='rm -f "$1"/etc/resolv.conf "$1"/etc/hostname; : > "$1"/etc/hostname; printf "127.0.0.1 localhost\n" > "$1"/etc/hosts' \
  --customize-hook='rm -f "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old "$1"/etc/*-' \
  --customize-hook='find "$1"/var/log -type f -delete' \
  --customize-hook="chroot \"\$1\" dpkg-query -W -f '\${Package} \${Version}\n' | LC_ALL=C sort > '$TMP_LIST'" \
  "$SUITE" "$TMP_OUT" "$MIRROR"

mv -f "$TMP_OUT" "$OUTPUT"
mv -f "$TMP_LIST" "$PKGLIST"
trap - EXIT
end=$(date +%s)
say "done in $((end - start))s: $OUTPUT ($(du -h "$OUTPUT" | cut -f1), $(wc -l <"$PKGLIST") packages, sha256 $(sha256sum "$OUTPUT" | cut -d' ' -f1))"
