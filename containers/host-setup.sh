#!/usr/bin/env bash
# kabuild host setup for a Debian 12 (bookworm) build host. Run as root.
#
#   host-setup.sh deps           install the host packages (skipped when all present)
#   host-setup.sh binfmt         mount binfmt_misc, enable qemu-aarch64 with the F flag
#   host-setup.sh engine         make sure a dockerd answers on unix:///var/run/docker.sock
#   host-setup.sh second-engine  a second, independent dockerd on unix:///run/kabuild-docker2.sock
#   host-setup.sh stop-engines   stop the daemons this script started (by pidfile)
#   host-setup.sh status         show what is set up
#   host-setup.sh all            deps + binfmt + engine
#
# Idempotent: every subcommand checks first and only acts when needed.
# Both engines run with --iptables=false --bridge=none: containers must use
# network_mode "none" (builds) or "host"; the default bridge network does not exist.
set -euo pipefail

PROG="kabuild-setup"
say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

# The package managers' own output goes to this log; a failing step names it and shows its tail.
SETUP_LOG=${KABUILD_SETUP_LOG:-$(cd "$(dirname "$0")/.." && pwd)/build/setup.log}
quietly() { bash "$(dirname "$0")/quietly.sh" "$SETUP_LOG" "$@"; }  # quietly WHAT CMD...

# Everything the host needs, in one place.
HOST_PACKAGES=(
  docker.io            # dockerd + containerd + runc (+ /usr/bin/docker client)
  qemu-user-static     # qemu-aarch64-static for arm64 images on x86_64
  binfmt-support       # update-binfmts
  mmdebstrap           # debian flavor rootfs
  arch-test            # lets mmdebstrap check that a foreign arch can run
  debian-archive-keyring
  makepkg              # host-side makepkg/pacman tools (repo-add, package inspection)
  pacman-package-manager
  libarchive-tools     # bsdtar
  zstd
  xz-utils
  gnupg
  rsync
  libfaketime
  diffoscope-minimal   # + python3-libarchive-c: diffs .pkg.tar.zst members
  binutils-multiarch   # lets diffoscope disassemble/readelf aarch64 ELF files
  python3-venv
  fakeroot
  curl
  ca-certificates
  patch                # kabuild promote's apply check
  bash                 # the PKGBUILD reader (essential on Debian; named so the tool registry is complete)
  coreutils            # env -i for the PKGBUILD reader
  util-linux           # unshare and setpriv: the PKGBUILD reader without network, as nobody
  # for the test suite (make test): a real sshd on loopback for remote publishing,
  # and a headless browser that renders the HTML report
  openssh-server
  openssh-client
  chromium
)

ENGINE1_SOCK=/var/run/docker.sock
ENGINE1_LOG=/var/log/kabuild-dockerd.log
ENGINE1_PID=/var/run/kabuild-dockerd.pid

ENGINE2_SOCK=/run/kabuild-docker2.sock
ENGINE2_LOG=/var/log/kabuild-docker2.log
ENGINE2_PID=/run/kabuild-docker2.pid
ENGINE2_ROOT=/var/lib/kabuild-docker2
ENGINE2_EXEC=/run/kabuild-docker2

ENGINE_WAIT=${KABUILD_ENGINE_WAIT:-60}

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root"; }

pkg_installed() {
  [ "$(dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

cmd_deps() {
  need_root
  local missing=() p
  for p in "${HOST_PACKAGES[@]}"; do
    pkg_installed "$p" || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    say "deps: all ${#HOST_PACKAGES[@]} host packages already installed"
    return 0
  fi
  say "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # no init system here: keep package scripts from trying to start services
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; created_policy=1
  fi
  say "deps: apt-get update and install (output in $SETUP_LOG)"
  quietly "apt-get update" apt-get update -q \
    || { [ "$created_policy" = 1 ] && rm -f "$policy"; exit 1; }
  quietly "apt-get install" apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || { [ "$created_policy" = 1 ] && rm -f "$policy"; exit 1; }
  [ "$created_policy" = 1 ] && rm -f "$policy"
  say "deps: done"
}

# ---------------------------------------------------------------- binfmt
BINFMT_DIR=/proc/sys/fs/binfmt_misc

cmd_binfmt() {
  need_root
  if [ ! -e "$BINFMT_DIR/status" ]; then
    say "binfmt: mounting binfmt_misc on $BINFMT_DIR"
    mount -t binfmt_misc binfmt_misc "$BINFMT_DIR" \
      || die "binfmt: cannot mount binfmt_misc (kernel without CONFIG_BINFMT_MISC, or not allowed in this container?)"
  fi
  [ -x /usr/bin/qemu-aarch64-static ] || die "binfmt: /usr/bin/qemu-aarch64-static missing (run: $0 deps)"
  command -v update-binfmts >/dev/null || die "binfmt: update-binfmts missing (run: $0 deps)"
  local entry="$BINFMT_DIR/qemu-aarch64"
  if [ ! -e "$entry" ]; then
    say "binfmt: enabling qemu-aarch64"
    # the package import may not have happened if binfmt_misc was not mounted at install time
    if ! update-binfmts --display qemu-aarch64 >/dev/null 2>&1; then
      quietly "update-binfmts --import qemu-aarch64" update-binfmts --import qemu-aarch64 || exit 1
    fi
    quietly "update-binfmts --enable qemu-aarch64" update-binfmts --enable qemu-aarch64 || exit 1
  fi
  [ -e "$entry" ] || die "binfmt: $entry still absent after enabling"
  if ! grep -q '^enabled' "$entry"; then
    say "binfmt: qemu-aarch64 registered but disabled; enabling"
    echo 1 >"$entry"
  fi
  local flags
  flags=$(sed -n 's/^flags: *//p' "$entry")
  case "$flags" in
    *F*) ;;
    *)
      # without F the interpreter path would be resolved inside the container, where it does not exist
      say "binfmt: qemu-aarch64 lacks the F (fix-binary) flag ('$flags'); re-registering with F"
      local interp magic mask
      interp=$(sed -n 's/^interpreter *//p' "$entry")
      magic=$(sed -n 's/^magic *//p' "$entry" | sed 's/\(..\)/\\x\1/g')
      mask=$(sed -n 's/^mask *//p' "$entry" | sed 's/\(..\)/\\x\1/g')
      echo -1 >"$entry"
      printf ':qemu-aarch64:M::%s:%s:%s:%sF\n' "$magic" "$mask" "$interp" "${flags}" >"$BINFMT_DIR/register" \
        || die "binfmt: re-registering qemu-aarch64 with F failed"
      flags=$(sed -n 's/^flags: *//p' "$entry")
      case "$flags" in *F*) ;; *) die "binfmt: qemu-aarch64 flags are '$flags', expected F";; esac
      ;;
  esac
  say "binfmt: qemu-aarch64 enabled, flags: $flags, interpreter $(sed -n 's/^interpreter *//p' "$entry")"
}

# ---------------------------------------------------------------- engines
engine_answers() { # $1 = socket path
  [ -S "$1" ] && timeout 10 docker -H "unix://$1" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

pid_alive() { # $1 = pidfile
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

ensure_cgroups() {
  # dockerd needs a cgroup hierarchy; on a host without an init system it may not be mounted
  if [ ! -e /sys/fs/cgroup/cgroup.controllers ] && [ -z "$(ls -A /sys/fs/cgroup 2>/dev/null)" ]; then
    say "engine: mounting cgroup2 on /sys/fs/cgroup"
    mount -t cgroup2 none /sys/fs/cgroup || die "engine: cannot mount cgroup2"
  fi
}

# start_engine NAME SOCK PIDFILE LOG [extra dockerd args...]
start_engine() {
  local name=$1 sock=$2 pidfile=$3 log=$4; shift 4
  need_root
  if engine_answers "$sock"; then
    say "$name: dockerd already answers on unix://$sock ($(docker -H "unix://$sock" version --format '{{.Server.Version}}'))"
    return 0
  fi
  command -v dockerd >/dev/null || die "$name: dockerd missing (run: $0 deps)"
  ensure_cgroups
  if pid_alive "$pidfile"; then
    say "$name: dockerd pid $(cat "$pidfile") exists but does not answer yet; waiting"
  else
    rm -f "$pidfile"
    # a stale socket from a dead daemon makes dockerd refuse to start
    [ -S "$sock" ] && { say "$name: removing stale socket $sock"; rm -f "$sock"; }
    say "$name: starting dockerd on unix://$sock (log $log)"
    mkdir -p "$(dirname "$log")"
    # setsid + nohup: detached from this shell, survives its exit
    setsid nohup dockerd \
      --host "unix://$sock" \
      --pidfile "$pidfile" \
      --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
      --bridge=none \
      "$@" >>"$log" 2>&1 </dev/null &
  fi
  local i=0
  while ! engine_answers "$sock"; do
    i=$((i + 1))
    if [ "$i" -ge "$ENGINE_WAIT" ]; then
      echo "---- last lines of $log ----" >&2
      tail -n 30 "$log" >&2 || true
      die "$name: dockerd did not answer on unix://$sock within ${ENGINE_WAIT}s"
    fi
    sleep 1
  done
  say "$name: dockerd answers on unix://$sock ($(docker -H "unix://$sock" version --format '{{.Server.Version}}'), pid $(cat "$pidfile" 2>/dev/null || echo '?'))"
}

cmd_engine() {
  # defaults: data-root /var/lib/docker, exec-root /var/run/docker; dockerd supervises its own
  # containerd under <exec-root>/containerd (unless a system containerd socket exists at
  # /run/containerd/containerd.sock, which it would then share -- see second-engine)
  start_engine engine "$ENGINE1_SOCK" "$ENGINE1_PID" "$ENGINE1_LOG"
}

cmd_second_engine() {
  mkdir -p "$ENGINE2_ROOT" "$ENGINE2_EXEC"
  # own data-root, exec-root (=> its own supervised containerd socket under $ENGINE2_EXEC/containerd),
  # pidfile, and its own containerd namespaces so that even a shared containerd would not mix them up.
  start_engine second-engine "$ENGINE2_SOCK" "$ENGINE2_PID" "$ENGINE2_LOG" \
    --data-root "$ENGINE2_ROOT" \
    --exec-root "$ENGINE2_EXEC" \
    --containerd-namespace kabuild2 \
    --containerd-plugins-namespace kabuild2-plugins
}

stop_engine() { # name pidfile
  local name=$1 pidfile=$2 pid i
  if ! pid_alive "$pidfile"; then say "$name: not running (no live pid in $pidfile)"; return 0; fi
  pid=$(cat "$pidfile")
  say "$name: stopping dockerd pid $pid"
  kill -TERM "$pid"
  for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || { say "$name: stopped"; return 0; }; sleep 1; done
  die "$name: dockerd pid $pid still alive after 30s"
}

cmd_stop_engines() {
  need_root
  stop_engine second-engine "$ENGINE2_PID"
  stop_engine engine "$ENGINE1_PID"
}

cmd_status() {
  local p nmissing=0
  for p in "${HOST_PACKAGES[@]}"; do pkg_installed "$p" || { say "status: package $p missing"; nmissing=1; }; done
  [ "$nmissing" = 0 ] && say "status: host packages installed"
  if [ -e "$BINFMT_DIR/qemu-aarch64" ]; then
    say "status: binfmt qemu-aarch64 $(head -n1 "$BINFMT_DIR/qemu-aarch64"), $(grep '^flags' "$BINFMT_DIR/qemu-aarch64")"
  else
    say "status: binfmt qemu-aarch64 not registered"
  fi
  local s
  for s in "$ENGINE1_SOCK" "$ENGINE2_SOCK"; do
    if engine_answers "$s"; then say "status: engine unix://$s answers"; else say "status: engine unix://$s down"; fi
  done
}

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

main() {
  [ $# -ge 1 ] || { usage; exit 2; }
  local c
  for c in "$@"; do
    case "$c" in
      deps) cmd_deps ;;
      binfmt) cmd_binfmt ;;
      engine) cmd_engine ;;
      second-engine) cmd_second_engine ;;
      stop-engines) cmd_stop_engines ;;
      status) cmd_status ;;
      all) cmd_deps; cmd_binfmt; cmd_engine ;;
      -h|--help|help) usage ;;
      *) usage >&2; die "unknown subcommand: $c" ;;
    esac
  done
}

main "$@"
