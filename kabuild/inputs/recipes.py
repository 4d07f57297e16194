"""A package's recipe: every file of its PKGBUILD directory, hashed in a stable order.

The recipe shapes the bytes of a package as much as the patches do, so its digest is recorded in
manifest.lock (``recipes:``), in every acceptance report, and is part of a run's identity: an edited
PKGBUILD makes the lock stale ("recipe changed since promote") and is never answered from, or
published from, a run of the old recipe.

The files are the ones the build context stages (:func:`recipe_files`), except the PKGBUILD-side
copy of the cumulative patch (``patch:``): that copy is checked against the lock's own output by
the drift check, so hashing it twice would only make a series change need two promotes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kabuild.config.document import HEX64
from kabuild.config.manifest import Manifest, Package
from kabuild.config.schema import Section
from kabuild.errors import ManifestError
from kabuild.files import digest_file

SKIP = frozenset({"src", "pkg", ".git", ".CI"})  # makepkg's own work directories and VCS metadata
PACKAGE_FILE = re.compile(r".+\.pkg\.tar(\.[a-z0-9]+)?$")  # packages a local makepkg left behind


def recipe_files(directory: Path) -> dict[str, Path]:
    """Every file of a PKGBUILD directory that goes into a build context, by relative name, sorted."""
    files: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name in SKIP or PACKAGE_FILE.match(path.name):
            continue
        if path.is_dir():
            for sub in sorted(p for p in path.rglob("*") if p.is_file()):
                files[sub.relative_to(directory).as_posix()] = sub
        elif path.is_file():
            files[path.name] = path
    return dict(sorted(files.items()))


@dataclass(frozen=True)
class RecipeFile:
    path: str  # relative to the PKGBUILD directory
    sha256: str
    executable: bool = False  # the context tar gives it mode 0755: part of what is built

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "sha256": self.sha256}
        if self.executable:
            d["executable"] = True
        return d


@dataclass(frozen=True)
class RecipePin:
    """One package's recipe as manifest.lock records it."""

    package: str
    pkgbuild: str  # the directory as the manifest names it
    sha256: str  # over (path, mode, sha256) of every file, in path order
    files: tuple[RecipeFile, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"package": self.package, "pkgbuild": self.pkgbuild, "sha256": self.sha256,
                "files": [f.to_dict() for f in self.files]}

    @classmethod
    def from_section(cls, sec: Section) -> RecipePin:
        files = []
        for s in sec.items("files", required=False):
            files.append(RecipeFile(str(s.text("path", what="a path inside the PKGBUILD directory")),
                                    str(s.text("sha256", pattern=HEX64, what="64 lowercase hex digits")),
                                    s.flag("executable", default=False)))
            s.done()
        pin = cls(str(sec.text("package", what="a package name")),
                  str(sec.text("pkgbuild", what="the PKGBUILD directory")),
                  str(sec.text("sha256", pattern=HEX64, what="64 lowercase hex digits")), tuple(files))
        if digest_of(pin.files) != pin.sha256:
            sec.fail("sha256", "is not the digest of the files listed under it (edited by hand?)")
        sec.done()
        return pin


def digest_of(files: tuple[RecipeFile, ...]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.path}\0{'755' if f.executable else '644'}\0{f.sha256}\n".encode())
    return h.hexdigest()


def require_directories(manifest: Manifest) -> None:
    """Every package's PKGBUILD directory exists: a typo is a configuration error (exit 2), not drift."""
    for index, package in enumerate(manifest.packages):
        if not package.pkgbuild.is_dir():
            raise ManifestError(f"{manifest.display}: packages[{index}].pkgbuild: the directory "
                                f"{package.pkgbuild_display} does not exist (checked {package.pkgbuild})")


def pin(package: Package) -> RecipePin:
    """The recipe of ``package`` as it is on disk now."""
    files = []
    for rel, path in recipe_files(package.pkgbuild).items():
        if package.patch is not None and rel == package.patch:
            continue
        try:
            digest = digest_file(path)
            executable = bool(path.stat().st_mode & 0o111)
        except OSError as e:
            raise ManifestError(f"package {package.name}: {package.pkgbuild_display}/{rel} cannot be read: "
                                f"{e.strerror or e}") from None
        files.append(RecipeFile(rel, digest.sha256, executable))
    done = tuple(files)
    return RecipePin(package.name, package.pkgbuild_display, digest_of(done), done)


def pins(manifest: Manifest) -> tuple[RecipePin, ...]:
    require_directories(manifest)
    return tuple(pin(p) for p in manifest.packages)


def digests(recipes: tuple[RecipePin, ...]) -> dict[str, str]:
    """Package name -> recipe digest: what run identities and reports carry."""
    return {r.package: r.sha256 for r in recipes}


def changes(recorded: tuple[RecipePin, ...], now: tuple[RecipePin, ...]) -> list[str]:
    """One phrase per package whose recipe differs: which files changed, appeared or went."""
    out = []
    old = {r.package: r for r in recorded}
    new = {r.package: r for r in now}
    for name in sorted(set(old) | set(new)):
        if name not in new:
            out.append(f"{name}: no longer a package")
        elif name not in old:
            out.append(f"{name}: not recorded")
        elif old[name].sha256 != new[name].sha256:
            out.append(f"{name} ({new[name].pkgbuild}): {file_changes(old[name], new[name])}")
    return out


def file_changes(old: RecipePin, new: RecipePin) -> str:
    a = {f.path: f for f in old.files}
    b = {f.path: f for f in new.files}
    parts = []
    for path in sorted(set(a) | set(b)):
        if path not in b:
            parts.append(f"{path} removed")
        elif path not in a:
            parts.append(f"{path} added")
        elif a[path].sha256 != b[path].sha256:
            parts.append(f"{path} edited")
        elif a[path].executable != b[path].executable:
            parts.append(f"{path} mode changed")
    if old.pkgbuild != new.pkgbuild:
        parts.append(f"directory was {old.pkgbuild}")
    return ", ".join(parts) or "changed"
