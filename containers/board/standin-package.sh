#!/bin/bash
# standin-package.sh ROOTFS: install the pacman package `kabuild-board-standin` into the board
# stand-in's root filesystem (an mmdebstrap customize hook of mkrootfs.sh).
#
# The board stand-in is Debian with Arch's pacman, so its pacman database starts empty; an Arch
# Linux ARM kernel package depends on coreutils, kmod and mkinitcpio.  This package stands in for
# them: it provides those names (the real coreutils and kmod are Debian's, on the board) and owns
# /usr/bin/mkinitcpio, the mkinitcpio STAND-IN (mkinitcpio-standin).  pacman installs it, so the
# board's package database is a real one from the first boot.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
install -Dm755 "$HERE/mkinitcpio-standin" "$WORK/usr/bin/mkinitcpio"
size=$(stat -c %s "$WORK/usr/bin/mkinitcpio")
cat > "$WORK/.PKGINFO" <<PKGINFO
pkgname = kabuild-board-standin
pkgbase = kabuild-board-standin
pkgver = 1-1
pkgdesc = kabuild board stand-in: Debian's coreutils and kmod, and a mkinitcpio stand-in
builddate = 1704067200
packager = kabuild <kabuild@localhost>
size = $size
arch = any
license = GPL-2.0-only
provides = coreutils=9.1
provides = kmod=30
provides = mkinitcpio=39
PKGINFO
bsdtar -C "$WORK" --uid 0 --gid 0 -cf "$ROOT/tmp/kabuild-board-standin.pkg.tar" .PKGINFO usr
# no CheckSpace here: the chroot has no /etc/mtab yet (the running board has one)
sed '/^CheckSpace/d' "$ROOT/etc/pacman.conf" > "$ROOT/tmp/kabuild-pacman.conf"
chroot "$ROOT" pacman --config /tmp/kabuild-pacman.conf -U --noconfirm --noprogressbar /tmp/kabuild-board-standin.pkg.tar
rm -f "$ROOT/tmp/kabuild-board-standin.pkg.tar" "$ROOT/tmp/kabuild-pacman.conf"
# Arch keeps depmod in /usr/bin (the kernel package's 60 hook runs /usr/bin/depmod); Debian in /usr/sbin
ln -sf /usr/sbin/depmod "$ROOT/usr/bin/depmod"
