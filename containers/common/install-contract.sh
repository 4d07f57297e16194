#!/bin/bash
# install-contract.sh ROOT ARCH CHOST
#
# Installs the kabuild in-container contract into a root filesystem. Shared by every
# image flavor so that all images behave the same:
#   - /usr/local/bin/kabuild-build            (entry script)
#   - /etc/makepkg.conf                       (common/makepkg.conf with CARCH/CHOST/-march filled in)
#   - users builder 1000:1000 (/home/builder) and kabuild-alt 2000:2000 (/home/kabuild-alt)
#   - /build/{src,out,work,srcdest}           mode 1777
#   - /var/lib/pacman/local                   empty pacman db, if the image has none (debian flavor)
#   - locales C.UTF-8 + en_US.UTF-8 + de_DE.UTF-8 generated through /etc/locale.gen + locale-gen
#
# ROOT  the rootfs directory ("/" when run inside the image being prepared)
# ARCH  Debian-style architecture: arm64 | amd64
# CHOST the gcc triplet of the image's toolchain (aarch64-linux-gnu on Debian,
#       aarch64-unknown-linux-gnu on Arch Linux ARM)
#
# Needs: useradd/groupadd and locale-gen inside ROOT (run via chroot when ROOT != /).
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 ROOT ARCH CHOST" >&2; exit 2; }
ROOT=${1%/}; ROOT=${ROOT:-/}
ARCH=$2
CHOST=$3
HERE=$(cd "$(dirname "$0")" && pwd)

# the locales every image has besides C.UTF-8 (built into glibc)
KABUILD_LOCALES=("en_US.UTF-8 UTF-8" "de_DE.UTF-8 UTF-8")

say() { printf 'kabuild-contract: %s\n' "$*"; }

case "$ARCH" in
  arm64|aarch64) CARCH=aarch64; MARCH="-march=armv8-a" ;;
  amd64|x86_64)  CARCH=x86_64;  MARCH="-march=x86-64 -mtune=generic" ;;
  *) echo "install-contract: unsupported ARCH '$ARCH' (arm64|amd64)" >&2; exit 2 ;;
esac

in_root() {
  if [ "$ROOT" = / ]; then "$@"; else chroot "$ROOT" "$@"; fi
}

say "installing kabuild-build and makepkg.conf (CARCH=$CARCH CHOST=$CHOST) into $ROOT"
install -D -m 0755 "$HERE/kabuild-build" "$ROOT/usr/local/bin/kabuild-build"
sed -e "s|@KABUILD_CARCH@|$CARCH|g" \
    -e "s|@KABUILD_CHOST@|$CHOST|g" \
    -e "s|@KABUILD_MARCH@|$MARCH|g" \
    "$HERE/makepkg.conf" >"$ROOT/etc/makepkg.conf.kabuild"
if grep -q '@KABUILD_[A-Z_]*@' "$ROOT/etc/makepkg.conf.kabuild"; then
  echo "install-contract: unreplaced placeholder in makepkg.conf" >&2; exit 1
fi
chmod 0644 "$ROOT/etc/makepkg.conf.kabuild"
mv -f "$ROOT/etc/makepkg.conf.kabuild" "$ROOT/etc/makepkg.conf"

say "creating users builder (1000) and kabuild-alt (2000)"
add_user() { # name uid
  local name=$1 id=$2
  if ! in_root getent group "$name" >/dev/null; then
    in_root groupadd --gid "$id" "$name"
  fi
  if ! in_root getent passwd "$name" >/dev/null; then
    in_root useradd --uid "$id" --gid "$id" --home-dir "/home/$name" --create-home \
      --shell /bin/bash --comment "kabuild builder" "$name"
  fi
  [ "$(in_root id -u "$name")" = "$id" ] || { echo "install-contract: $name does not have uid $id" >&2; exit 1; }
  chmod 0755 "$ROOT/home/$name"
}
add_user builder 1000
add_user kabuild-alt 2000

say "creating /build"
install -d -m 0755 "$ROOT/build"
chmod 1777 "$ROOT/build"
for d in src out work srcdest; do
  install -d -m 0755 "$ROOT/build/$d"
  chmod 1777 "$ROOT/build/$d"
done

# makepkg runs `pacman -Qi` (under fakeroot) for the .BUILDINFO "installed" field; without a
# database directory pacman tries to create one and prints "could not create database".
# An empty local db (what pacman itself writes on first use) makes the query quietly empty.
if [ ! -d "$ROOT/var/lib/pacman/local" ]; then
  say "creating empty pacman database /var/lib/pacman/local"
  install -d -m 0755 "$ROOT/var/lib/pacman" "$ROOT/var/lib/pacman/local"
  echo 9 >"$ROOT/var/lib/pacman/local/ALPM_DB_VERSION"
fi

say "generating locales: ${KABUILD_LOCALES[*]}"
printf '%s\n' "# kabuild: locales generated in every build image (C.UTF-8 is built in)" \
  "${KABUILD_LOCALES[@]}" >"$ROOT/etc/locale.gen"
in_root locale-gen >/dev/null
say "done"
