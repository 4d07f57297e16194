"""pacman's own metadata and tools: package file names, .PKGINFO, vercmp, repo-add."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kabuild import tools
from kabuild.errors import RefusalError, ToolError
from kabuild.process import run

PKGFILE_RE = re.compile(
    r"(?P<name>[A-Za-z0-9@_+][A-Za-z0-9@._+-]*)-(?P<ver>[^-/\s]+)-(?P<rel>[^-/\s]+)-(?P<arch>[^-/\s]+)"
    r"\.pkg\.tar(?:\.(?:zst|xz|gz|bz2|lz4|lrz|lzo|Z))?"
)


@dataclass(frozen=True)
class PkgFile:
    file: str
    name: str
    version: str  # [epoch:]pkgver-pkgrel
    arch: str = ""  # CARCH the package was built for, or "any"


def parse_pkgfile(file: str) -> PkgFile | None:
    m = PKGFILE_RE.fullmatch(file)
    if not m:
        return None
    return PkgFile(file, m.group("name"), f"{m.group('ver')}-{m.group('rel')}", m.group("arch"))


ANY_ARCH = "any"


def arch_problem(what: str, arch: str, host: str, host_arch: str) -> str | None:
    """Why a package built for ``arch`` does not belong to ``host`` (``host_arch``), or None."""
    if arch in (host_arch, ANY_ARCH):
        return None
    return f"{what} is built for {arch}, but host {host} is {host_arch} (only {host_arch} or {ANY_ARCH} packages belong to it)"


def pkginfo(path: Path) -> dict[str, str]:
    out = run([tools.find("bsdtar"), "-xOf", path, ".PKGINFO"], timeout=300).stdout
    info: dict[str, str] = {}
    for line in out.splitlines():
        if " = " in line and not line.startswith("#"):
            key, _, value = line.partition(" = ")
            info.setdefault(key.strip(), value.strip())
    if "pkgname" not in info or "pkgver" not in info:
        raise RefusalError(f"{path.name} is not a pacman package (no pkgname/pkgver in .PKGINFO)")
    return info


def vercmp(a: str, b: str) -> int:
    out = run([tools.find("vercmp"), a, b], timeout=30).stdout.strip()
    try:
        return int(out)
    except ValueError:
        raise ToolError(f"vercmp printed {out!r} for {a} vs {b}") from None


def db_names(repository: str) -> dict[str, str]:
    return {
        "db": f"{repository}.db.tar.gz",
        "files": f"{repository}.files.tar.gz",
        "db_link": f"{repository}.db",
        "files_link": f"{repository}.files",
    }


def is_repo_file(repository: str, name: str) -> bool:
    return name.startswith(f"{repository}.db") or name.startswith(f"{repository}.files")


def pacman_conf_for(repository: str, location: str, *, remote: bool) -> str:
    if remote:
        return (f"[{repository}]\nSigLevel = Required\n"
                f"# Server = https://<web server serving {location}>  (pacman cannot fetch over ssh)\n")
    return f"[{repository}]\nSigLevel = Required\nServer = file://{location}\n"




def repo_add(staging: Path, repository: str, files: list[str], progress: Callable[[str], None]) -> None:
    """Add ``files`` to the repository database in ``staging`` with pacman's own repo-add."""
    names = db_names(repository)
    # repo-add replaces the database files by rename: the live state's hard links stay untouched.
    for n in (names["db"], names["files"]):
        for suffix in (".sig", ".old", ".old.sig"):
            with contextlib.suppress(FileNotFoundError):
                (staging / (n + suffix)).unlink()
    for n in (names["db_link"], names["files_link"]):
        for suffix in ("", ".sig"):
            with contextlib.suppress(FileNotFoundError):
                (staging / (n + suffix)).unlink()
    progress(f"updating the {repository} database with repo-add")
    run([tools.find("repo-add"), "--nocolor", "--quiet", names["db"],
         *files], cwd=staging, timeout=1800)
    for n in (names["db"], names["files"]):
        for suffix in (".old", ".old.sig"):
            with contextlib.suppress(FileNotFoundError):
                (staging / (n + suffix)).unlink()
    with contextlib.suppress(FileNotFoundError):
        (staging / (names["db"] + ".lck")).unlink()
