#!/bin/bash
# import-image.sh FLAVOR ARCH ROOTFS.tar TAG
#
# `docker import`s a kabuild rootfs tar with the image config every kabuild build image
# carries (the rootfs tar holds no config of its own). Honors DOCKER_HOST, e.g.
#   DOCKER_HOST=unix:///run/kabuild-docker2.sock containers/import-image.sh debian arm64 x.tar kabuild/debian:arm64
# Prints the image id on stdout.
#
# Config set here (the one place it is defined):
#   USER 1000:1000                     default user (callers pass user=uid:gid anyway)
#   WORKDIR /build
#   ENV PATH=..., ENV LANG=C.UTF-8     an imported image has no environment at all
#   CMD ["/usr/local/bin/kabuild-build"]
#   LABEL org.kabuild.flavor/arch/contract
#   --platform linux/ARCH              records the real architecture (else the host's)
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 FLAVOR ARCH(arm64|amd64) ROOTFS.tar TAG" >&2; exit 2; }
FLAVOR=$1 ARCH=$2 TAR=$3 TAG=$4
case "$ARCH" in arm64|amd64) ;; *) echo "ARCH must be arm64 or amd64" >&2; exit 2;; esac
[ -f "$TAR" ] || { echo "no such file: $TAR" >&2; exit 2; }

exec docker import \
  --platform "linux/$ARCH" \
  --change 'USER 1000:1000' \
  --change 'WORKDIR /build' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL org.kabuild.flavor=$FLAVOR org.kabuild.arch=$ARCH org.kabuild.contract=1" \
  --change 'CMD ["/usr/local/bin/kabuild-build"]' \
  "$TAR" "$TAG"
