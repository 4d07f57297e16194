"""The manifest's ``install:`` section: how `kabuild install` reaches a board and what it may do there.

Read with the rest of the manifest, in the same pass (:func:`kabuild.config.manifest.load_manifest`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from kabuild.config import settings
from kabuild.config.choices import BootMethod
from kabuild.config.document import NAME
from kabuild.config.schema import Section
from kabuild.files import resolve_path


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


def read_install(sec: Section, root: Path, package_names: tuple[str, ...]) -> Install:
    ssh = settings.required_text(sec, "ssh")
    if ssh.startswith("-"):
        sec.fail("ssh", f"expected an ssh target, got {ssh!r}")
    boot = settings.choice(sec, "boot", BootMethod)
    paths = {}
    for key in ("known_hosts", "identity"):
        text = settings.text(sec, key)
        paths[key] = resolve_path(root, text) if text else None
    backup = settings.required_text(sec, "backup")
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
        port=settings.integer(sec, "port"),
        known_hosts=paths["known_hosts"], identity=paths["identity"],
        connect_timeout=settings.integer(sec, "connect_timeout"),
        heartbeat_timeout=settings.integer(sec, "heartbeat_timeout"),
        backup=backup, power_cycle=tuple(power),
        reboot=settings.required_text(sec, "reboot"),
        min_free_mb=settings.integer(sec, "min_free_mb"),
        packages=names or package_names[:1],
    )
    sec.done()
    return install
