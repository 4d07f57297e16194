"""Every external tool kabuild runs, declared once: its name, the Debian package that provides it, and
which verbs need it (after diffoscope's EXTERNAL_TOOLS).

:func:`find` resolves one tool when it is used; :func:`require` is the pre-flight check a verb runs
before it starts any work, so a missing tool is named (with its package) before any container starts,
not after two builds; :func:`survey` is what ``kabuild status`` shows.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kabuild.errors import ToolError

# Searched after the caller's PATH, so that a minimal PATH (cron, a service unit) still finds them.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Tool:
    name: str
    package: str  # the Debian package that provides it (containers/host-setup.sh installs them all)
    verbs: frozenset[str]  # the verbs that run it; "*ssh" marks an ssh:// destination or node
    why: str


def _tool(name: str, package: str, verbs: str, why: str) -> Tool:
    return Tool(name, package, frozenset(verbs.split()), why)


TOOLS: dict[str, Tool] = {t.name: t for t in (
    _tool("patch", "patch", "promote", "applies the cumulative patch to a copy of the baseline (the apply check)"),
    _tool("mmdebstrap", "mmdebstrap", "image", "builds the debian flavor's root filesystem"),
    _tool("zstd", "zstd", "reproduce",
          "decompresses .pkg.tar.zst for the member comparison; without it diffoscope shows a hexdump"),
    _tool("diffoscope", "diffoscope-minimal", "reproduce", "explains the members that differ"),
    _tool("bsdtar", "libarchive-tools", "reproduce reference publish install", "reads package metadata"),
    _tool("vercmp", "pacman-package-manager", "publish", "orders package versions like pacman"),
    _tool("repo-add", "pacman-package-manager", "publish", "writes the pacman repository database"),
    _tool("gpg", "gnupg", "publish install image-pin", "signs packages and verifies signatures"),
    _tool("gpgconf", "gnupg", "publish image-pin", "stops the gpg-agent of kabuild's own GnuPG homes"),
    _tool("gpg-connect-agent", "gnupg", "publish", "makes gpg-agent forget a cached passphrase before a check"),
    _tool("ssh", "openssh-client", "install *ssh", "reaches boards, ssh:// build nodes and publish destinations"),
    _tool("rsync", "rsync", "*ssh", "copies a repository to an ssh:// publish destination"),
    _tool("bash", "bash", "build reproduce", "reads each PKGBUILD the way makepkg does (sourced, sandboxed)"),
    _tool("env", "coreutils", "build reproduce", "gives the PKGBUILD reader an empty environment"),
    _tool("setpriv", "util-linux", "build reproduce", "runs the PKGBUILD reader as nobody when kabuild is root"),
    _tool("unshare", "util-linux", "build reproduce", "runs the PKGBUILD reader without network"),
)}


def _search_path() -> str:
    return os.environ.get("PATH", "") + os.pathsep + SYSTEM_PATH


def locate(name: str) -> str | None:
    """The tool's path, or None.  A tool in the active virtualenv wins (diffoscope from PyPI, say)."""
    venv = os.environ.get("VIRTUAL_ENV")
    if venv and (Path(venv) / "bin" / name).is_file():
        return str(Path(venv) / "bin" / name)
    return shutil.which(name, path=_search_path())


def _missing_line(tool: Tool) -> str:
    return f"{tool.name} (Debian package {tool.package}: {tool.why})"


def find(name: str) -> str:
    """The path of a declared tool, or a ToolError (exit 5) naming its Debian package."""
    tool = TOOLS[name]
    found = locate(name)
    if found is None:
        raise ToolError(f"required tool {_missing_line(tool)} not found; install it: apt-get install {tool.package}")
    return found


def needed_by(verbs: Iterable[str]) -> list[Tool]:
    wanted = set(verbs)
    return [t for t in TOOLS.values() if t.verbs & wanted]


def require(*verbs: str) -> None:
    """The pre-flight check: every tool the verbs need is there, or one line naming all that are not."""
    missing = [t for t in needed_by(verbs) if locate(t.name) is None]
    if missing:
        packages = " ".join(sorted({t.package for t in missing}))
        raise ToolError(f"missing tool(s) for {'/'.join(verbs)}: " + "; ".join(_missing_line(t) for t in missing)
                        + f"; install them: apt-get install {packages} (or run `make setup`)")


def survey() -> list[tuple[Tool, str | None]]:
    """Every declared tool with its path (None: missing), for `kabuild status`."""
    return [(t, locate(t.name)) for t in TOOLS.values()]
