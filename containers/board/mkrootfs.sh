#!/bin/bash
# mkrootfs.sh OUTPUT.tar
#
# The root filesystem of the *board stand-in* that `kabuild install` is tested against
# (tests/integration/test_install.py) and that `make demo-install` installs onto: Debian
# bookworm (essential) + a real sshd + a real pacman (which runs packages' hooks) + Debian's
# kmod (depmod), plus the stand-in "firmware" (board-firmware: U-Boot extlinux boot with
# bootcount fallback, see that file), a `uname -r` driven by the booted kernel file, `reboot`
# = restart of the container, and the pacman package kabuild-board-standin (standin-package.sh:
# provides coreutils/kmod/mkinitcpio, owns the mkinitcpio STAND-IN mkinitcpio-standin).
# Not a build image: nothing here is used to build packages.  Run as root (mmdebstrap).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 OUTPUT.tar" >&2; exit 2; }
OUT=$(realpath -m "$1")
mkdir -p "$(dirname "$OUT")"
SOURCE_DATE_EPOCH=1704067200 mmdebstrap --mode=root --format=tar --variant=essential \
  --architectures="$(dpkg --print-architecture)" \
  --include=openssh-server,pacman-package-manager,mawk,kmod \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook="install -m 0755 '$HERE/board-firmware' \"\$1/usr/local/sbin/board-firmware\"" \
  --customize-hook="install -m 0755 '$HERE/uname' \"\$1/usr/local/bin/uname\"" \
  --customize-hook="install -m 0755 '$HERE/reboot' \"\$1/usr/local/sbin/reboot\"" \
  --customize-hook="install -m 0644 '$HERE/pacman.conf' \"\$1/etc/pacman.conf\"" \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_* "$1"/etc/machine-id; mkdir -p "$1"/var/lib/pacman/local "$1"/var/lib/pacman/sync "$1"/root/.ssh; chmod 700 "$1"/root/.ssh' \
  --customize-hook="bash '$HERE/standin-package.sh' \"\$1\"" \
  --customize-hook='rm -f "$1"/var/log/pacman.log' \
  bookworm "$OUT.partial" http://deb.debian.org/debian
mv "$OUT.partial" "$OUT"
