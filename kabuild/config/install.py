"""The manifest's ``install:`` section: how `kabuild install` reaches a board and what it may do there.

Read with the rest of the manifest, in the same pass (:func:`kabuild.config.manifest.load_manifest`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from kabuild.config.document import DTB, NAME
from kabuild.config.schema import Section
from kabuild.files import resolve_path


class BootMethod(enum.StrEnum):
    EXTLINUX = "extlinux"
    UBOOT_SCRIPT = "uboot-script"
    SYSTEMD_BOOT = "systemd-boot"
    GRUB = "grub"


# What `kabuild install` can write today.  The others are known names that a manifest may not use
# yet: refused when the manifest is read, not halfway through an install.
IMPLEMENTED = (BootMethod.EXTLINUX,)


@dataclass(frozen=True)
class Install:
    """How `kabuild install` reaches the board and what it may do there (README: Installing on a board)."""

    ssh: str  # [user@]host
    boot: BootMethod
    port: int = 22
    known_hosts: Path | None = None  # UserKnownHostsFile (default: ssh's own)
    identity: Path | None = None  # ssh private key (default: ssh's own / the agent)
    connect_timeout: int = 10  # seconds, for every ssh connection
    heartbeat_timeout: int = 300  # seconds the board has to come back on the new kernel
    backup: str = ""  # local directory or ssh://[user@]host[:port]/path for backups ("" = build/backups)
    power_cycle: tuple[str, ...] = ()  # local command (argv) that power-cycles the board, if any
    reboot: str = "reboot"  # the command that reboots the board
    min_free_mb: int = 8  # /boot must keep this much free after the install
    packages: tuple[str, ...] = ()  # the manifest packages to install (default: the first one)
    fdt: str | None = None  # FDT <the package's device-tree directory>/<fdt> instead of FDTDIR


def _bounded(sec: Section, key: str, default: int, low: int, high: int, what: str) -> int:
    return sec.integer(key, required=False, default=default, minimum=low, maximum=high, what=what)


def read_install(sec: Section, root: Path, package_names: tuple[str, ...]) -> Install:
    ssh = sec.text("ssh", pattern=r"([A-Za-z0-9._-]+@)?[A-Za-z0-9._:-]+",
                   what="an ssh target ([user@]host, no options or spaces)")
    assert ssh is not None
    if ssh.startswith("-"):
        sec.fail("ssh", f"expected an ssh target, got {ssh!r}")
    boot = sec.choice("boot", BootMethod)
    assert boot is not None
    if boot not in IMPLEMENTED:
        sec.fail("boot", f"{boot} is not implemented yet (implemented: {', '.join(m.value for m in IMPLEMENTED)})")
    fdt = sec.text("fdt", required=False, pattern=DTB,
                   what="a device tree under the package's /boot/dtbs/, e.g. rockchip/rk3399-rockpro64.dtb")
    paths = {}
    for key in ("known_hosts", "identity"):
        text = sec.text(key, required=False, what="a file path")
        paths[key] = resolve_path(root, text) if text else None
    backup = sec.text("backup", required=False, default="",
                      what="a local directory or ssh://[user@]host[:port]/absolute/path for backups")
    if backup and "://" in backup:
        u = urlparse(backup)
        try:
            port_ok = u.port is None or 0 < u.port < 65536
        except ValueError:
            port_ok = False
        if u.scheme != "ssh" or not u.hostname or not u.path.startswith("/") or u.path == "/" or not port_ok \
                or u.query or u.fragment or u.password:
            sec.fail("backup", f"expected a local directory or ssh://[user@]host[:port]/absolute/path, got {backup!r}")
    power = sec.sequence("power_cycle", required=False)
    if any(not isinstance(a, str) or not a for a in power):
        sec.fail("power_cycle", "expected a command as a list of non-empty strings (argv, no shell)")
    names = sec.texts("packages", pattern=NAME, what="a package name from packages:")
    for name in names:
        if name not in package_names:
            sec.fail("packages", f"{name!r} is not one of the manifest's packages ({', '.join(package_names)})")
    install = Install(
        ssh=ssh, boot=boot,
        port=_bounded(sec, "port", 22, 1, 65535, "a TCP port"),
        known_hosts=paths["known_hosts"], identity=paths["identity"],
        connect_timeout=_bounded(sec, "connect_timeout", 10, 1, 120, "seconds"),
        heartbeat_timeout=_bounded(sec, "heartbeat_timeout", 300, 5, 3600, "seconds"),
        backup=str(backup), power_cycle=tuple(power),
        reboot=str(sec.text("reboot", required=False, default="reboot", what="a command")),
        min_free_mb=_bounded(sec, "min_free_mb", 8, 0, 1 << 20, "MiB"),
        packages=names or package_names[:1],
        fdt=fdt,
    )
    sec.done()
    return install
