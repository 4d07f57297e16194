#!/bin/bash
# mkimage.sh ROOTFS.tar.gz ROOTFS.tar.gz.sig SIGNING-KEY.asc OUTPUT.tar
#
# Builds the kabuild "archlinuxarm" (production, aarch64) build image from the official
# Arch Linux ARM root tarball:
#   1. checks the tarball's sha256 against recipe.yaml rootfs_sha256 (refuses if unpinned)
#   2. verifies the detached signature with the operator-supplied public key, whose
#      fingerprint must equal recipe.yaml signing_key_fingerprint (refuses if unpinned)
#   3. docker imports the tarball as a temporary base image
#   4. runs stage2.sh in a container of it (as root, --network host: pacman needs the
#      Arch Linux ARM mirrors, or the recipe's pinned `mirror:`, a file:// one mounted
#      read-only): installs the recipe's packages, removes boot-only packages,
#      installs the common kabuild contract (users, /build, kabuild-build, makepkg.conf,
#      locales), cleans caches/keyrings/logs
#   5. docker exports that container to OUTPUT.tar and writes OUTPUT.packages.txt
#      ("name version" lines, sorted)
# Then import OUTPUT.tar like every flavor:
#   containers/import-image.sh archlinuxarm arm64 OUTPUT.tar kabuild/archlinuxarm:arm64
#
# The engine is the default docker (or $DOCKER_HOST). Needs binfmt qemu-aarch64 with the
# F flag on an x86_64 host (containers/host-setup.sh binfmt).
#
# NOT TESTED on the machine it was written on (the tarball host was not reachable).
# Known risk areas when first run: pacman's download sandbox under qemu-user (stage2.sh
# disables it when pacman supports --disable-sandbox), CheckSpace in containers (disabled),
# /etc/resolv.conf in the tarball being a symlink (stage2 replaces it).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
COMMON=$(cd "$HERE/../common" && pwd)
RECIPE=$HERE/recipe.yaml  # read by recipe-lib.sh
export RECIPE
# shellcheck source=../common/recipe-lib.sh
. "$COMMON/recipe-lib.sh"

say() { printf 'kabuild-alarm: %s\n' "$*" >&2; }
die() { printf 'kabuild-alarm: ERROR: %s\n' "$*" >&2; exit 1; }

[ $# -eq 4 ] || { echo "usage: $0 ROOTFS.tar.gz ROOTFS.tar.gz.sig SIGNING-KEY.asc OUTPUT.tar" >&2; exit 2; }
TARBALL=$1 SIG=$2 KEY=$3 OUTPUT=$4
case "$OUTPUT" in *.tar) ;; *) die "OUTPUT must end in .tar";; esac
for f in "$TARBALL" "$SIG" "$KEY"; do [ -f "$f" ] || die "no such file: $f"; done
command -v docker >/dev/null || die "docker missing"
command -v gpgv >/dev/null || die "gpgv missing (apt-get install gpgv)"

WANT_SHA=$(recipe_scalar rootfs_sha256 || true)
WANT_FPR=$(recipe_scalar signing_key_fingerprint || true)
WANT_FPR=$(printf '%s' "$WANT_FPR" | tr -d ' ' | tr 'a-f' 'A-F')
CHOST=$(recipe_scalar chost_arm64) || die "recipe: no chost_arm64"
MIRROR=$(recipe_scalar mirror || true)
MOUNTS=()
case "$MIRROR" in
  "") ;;
  file:///*) dir=${MIRROR#file://}; dir=${dir%%\$*}; [ -d "$dir" ] || die "mirror directory $dir missing"
             MOUNTS=(-v "$dir:$dir:ro") ;;
  http://*|https://*) ;;
  *) die "recipe.yaml mirror must be an http(s):// or file:/// pacman Server URL, got '$MIRROR'" ;;
esac
mapfile -t INSTALL < <(recipe_list install)
mapfile -t REMOVE < <(recipe_list remove)

# ---- 1. pinned checksum
[[ $WANT_SHA =~ ^[0-9a-f]{64}$ ]] || die "recipe.yaml rootfs_sha256 is not pinned (empty or not 64 hex digits): the operator must pin the tarball's sha256 first"
[[ $WANT_FPR =~ ^[0-9A-F]{40}$ ]] || die "recipe.yaml signing_key_fingerprint is not pinned (40 hex digits): the operator must confirm and fill it in first"
say "checking sha256 of $TARBALL"
GOT_SHA=$(sha256sum "$TARBALL" | cut -d' ' -f1)
[ "$GOT_SHA" = "$WANT_SHA" ] || die "sha256 mismatch: got $GOT_SHA, recipe pins $WANT_SHA"

# ---- 2. signature, by the pinned key only
GNUPGHOME=$(mktemp -d); export GNUPGHOME
WORK=$(mktemp -d)
CID=
cleanup() {
  if [ -n "$CID" ]; then docker rm -f "$CID" >/dev/null 2>&1 || true; fi
  rm -rf "$GNUPGHOME" "$WORK"
}
trap cleanup EXIT
say "verifying signature with key $WANT_FPR"
gpg --batch --quiet --import "$KEY" 2>/dev/null || die "cannot import key file $KEY"
gpg --batch --with-colons --fingerprint | awk -F: '$1 == "fpr" { print $10 }' | grep -qx "$WANT_FPR" \
  || die "key file $KEY does not contain the pinned key $WANT_FPR"
gpg --batch --export "$WANT_FPR" >"$WORK/pinned.gpg"
STATUS=$(gpgv --status-fd 1 --keyring "$WORK/pinned.gpg" "$SIG" "$TARBALL" 2>/dev/null) \
  || die "signature verification FAILED for $TARBALL"
# VALIDSIG <signing-(sub)key fpr> ... <primary key fpr> as the last field
printf '%s\n' "$STATUS" | awk '$2 == "VALIDSIG" { print $NF }' | grep -qx "$WANT_FPR" \
  || die "signature is valid but not made by the pinned key $WANT_FPR"
say "signature OK"

# ---- 3. base image
BASE_TAG="kabuild-alarm-base:${WANT_SHA:0:16}"
if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
  say "importing $TARBALL as $BASE_TAG"
  docker import --platform linux/arm64 "$TARBALL" "$BASE_TAG" >/dev/null
fi

# ---- 4. stage 2 inside the image (root, network: pacman downloads)
cp -a "$COMMON" "$WORK/common"
cp -a "$HERE/stage2.sh" "$WORK/stage2.sh"
printf '%s\n' "${INSTALL[@]}" >"$WORK/install.txt"
printf '%s\n' "${REMOVE[@]}" >"$WORK/remove.txt"
# no --platform here: docker 20.10 ignores --platform on import (the image is labelled amd64),
# and create --platform would then try to pull from a registry
# no --platform on create: docker 20.10 ignores --platform on import (the image is then
# labelled with the host arch) and `create --platform linux/arm64` would try a registry pull
CID=$(docker create --network host --user 0:0 "${MOUNTS[@]}" \
  -e KABUILD_CHOST="$CHOST" -e KABUILD_MIRROR="$MIRROR" "$BASE_TAG" /bin/bash /kabuild-stage2/stage2.sh)
docker cp "$WORK/." "$CID:/kabuild-stage2"
say "running stage2 (pacman -Syu ${INSTALL[*]}) -- this runs under qemu and takes a while"
docker start -a "$CID" || die "stage2 failed"

# ---- 5. export
OUTPUT=$(realpath -m "$OUTPUT")
mkdir -p "$(dirname "$OUTPUT")"
docker cp "$CID:/kabuild-packages.txt" "${OUTPUT%.tar}.packages.txt"
say "exporting to $OUTPUT"
# the stage2 scratch files are removed from the export
docker export "$CID" | bsdtar -cf "$OUTPUT.tmp" --exclude kabuild-stage2 --exclude kabuild-packages.txt @- \
  || die "export failed"
mv -f "$OUTPUT.tmp" "$OUTPUT"
say "done: $OUTPUT (sha256 $(sha256sum "$OUTPUT" | cut -d' ' -f1))"
say "next: containers/import-image.sh archlinuxarm arm64 $OUTPUT kabuild/archlinuxarm:arm64"
