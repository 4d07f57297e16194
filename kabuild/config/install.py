"""The manifest's ``install:`` section: how `kabuild install` reaches a board and what it may do there.

Read with the rest of the manifest, in the same pass (:func:`kabuild.config.manifest.load_manifest`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from kabuild.config import settings
from kabuild.config.choices import BootMethod
from kabuild.config.document import NAME
from kabuild.config.plausible import looks_like_url, ssh_url_problem
from kabuild.config.schema import Section
from kabuild.files import resolve_path
from kabuild.process import BASE_ENV

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


def _hook_program(sec: Section, root: Path, program: str) -> Path:
    """The power-cycle hook's program as an absolute path: a path (repository-relative, ``~``
    expanded) or a name on PATH (the caller's, then the one commands run with)."""
    if "/" in program:
        path = resolve_path(root, program)
    else:
        found = shutil.which(program, path=os.pathsep.join([os.environ.get("PATH", ""), BASE_ENV["PATH"]]))
        if found is None:
            sec.fail("power_cycle", f"the hook's program {program!r} is not found on PATH (it power-cycles the board "
                                    "when a new kernel never answers)")
        path = Path(found)
    if not path.is_file():
        sec.fail("power_cycle", f"the hook's program {path} {'is not a file' if path.exists() else 'does not exist'} "
                                "(it power-cycles the board when a new kernel never answers)")
    if not os.access(path, os.X_OK):
        sec.fail("power_cycle", f"the hook's program {path} is not executable (chmod +x {path})")
    return path.absolute()


def read_install(sec: Section, root: Path, package_names: tuple[str, ...]) -> Install:
    ssh = settings.required_text(sec, "ssh")
    user, _, host = ssh.rpartition("@")
    if host.startswith(("-", ".")) or user.startswith(("-", ".")) or host.endswith("."):  # ssh would read an option
        sec.fail("ssh", f"expected an ssh target ([user@]host, no options or spaces), got {ssh!r}")
    boot = settings.choice(sec, "boot", BootMethod)
    if boot not in IMPLEMENTED:
        sec.fail("boot", f"{boot} is not implemented yet (implemented: {', '.join(m.value for m in IMPLEMENTED)})")
    fdt = settings.text(sec, "fdt")
    paths = {}
    for key in ("known_hosts", "identity"):
        text = settings.text(sec, key)
        paths[key] = resolve_path(root, text) if text else None
    backup = settings.required_text(sec, "backup")
    if looks_like_url(backup):
        sec.fail("backup", f"{backup!r} looks like a URL with a slash missing: expected ssh://[user@]host[:port]"
                           f"/absolute/path (for a local directory of that name write ./{backup})")
    if backup and "://" in backup:
        u = urlparse(backup)
        try:
            port_ok = u.port is None or 0 < u.port < 65536
        except ValueError:
            port_ok = False
        if u.scheme != "ssh" or not u.hostname or not u.path.startswith("/") or u.path == "/" or not port_ok \
                or u.query or u.fragment or u.password:
            sec.fail("backup", f"expected a local directory or ssh://[user@]host[:port]/absolute/path, got {backup!r}")
        problem = ssh_url_problem(backup, u)
        if problem:
            sec.fail("backup", problem)
    power = sec.sequence("power_cycle", required=False)
    if any(not isinstance(a, str) or not a for a in power):
        sec.fail("power_cycle", "expected a command as a list of non-empty strings (argv, no shell)")
    power = list(sec.texts("power_cycle", what="a command argument"))
    if power:  # needed most in the middle of a rollback: checked now, never found missing then
        power[0] = str(_hook_program(sec, root, power[0]))
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
        fdt=fdt,
    )
    sec.done()
    return install
