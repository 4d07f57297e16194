"""The blocks later stages add to manifest.lock: ``build:`` (the latest build) and ``install:`` (what is
on the board now).  They are typed like the rest of the lock and read through the located reader, so a
damaged block is one line naming the file and the key (exit 3)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kabuild.config.document import HEX64, NAME, PKGFILE, ImageRecord, read_digest
from kabuild.config.schema import Section
from kabuild.files import Digest


@dataclass(frozen=True)
class BuiltFile:
    file: str
    digest: Digest
    package: str  # the manifest package it was built from
    image: str  # the image tag it was built in

    def to_dict(self) -> dict[str, Any]:
        return {**self.digest.as_dict(), "package": self.package, "image": self.image}


@dataclass(frozen=True)
class ReproducedBy:
    run_id: str
    verdict: str


@dataclass(frozen=True)
class BuildBlock:
    """The latest build (by `kabuild build`, or build 1 of `kabuild reproduce`)."""

    built_at: str
    node: str
    requested_node: str
    fell_back: bool
    image: ImageRecord
    packages: tuple[BuiltFile, ...]
    reproduce: ReproducedBy | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "built_at": self.built_at, "node": self.node, "requested_node": self.requested_node,
            "fell_back": self.fell_back, "image": self.image.to_dict(),
            "packages": {p.file: p.to_dict() for p in self.packages},
        }
        if self.reproduce is not None:
            d["reproduce"] = {"run_id": self.reproduce.run_id, "verdict": self.reproduce.verdict}
        return d

    @classmethod
    def from_section(cls, sec: Section) -> BuildBlock:
        image = sec.section("image")
        assert image is not None
        packages = []
        for name, ps in sec.map_items("packages"):
            if not isinstance(name, str) or not _fullmatch(PKGFILE, name):
                ps.fail("", f"expected a package file name, got {name!r}")
            packages.append(BuiltFile(str(name), read_digest(ps), str(ps.text("package")), str(ps.text("image"))))
            ps.done()
        rs = sec.section("reproduce", required=False)
        reproduce = None
        if rs is not None:
            reproduce = ReproducedBy(str(rs.text("run_id")), str(rs.text("verdict")))
            rs.done()
        block = cls(
            built_at=str(sec.text("built_at", what="a UTC timestamp")),
            node=str(sec.text("node", what="a node name")),
            requested_node=str(sec.text("requested_node", what="a node name")),
            fell_back=sec.flag("fell_back"),
            image=ImageRecord.from_section(image),
            packages=tuple(packages),
            reproduce=reproduce,
        )
        sec.done()
        return block


def _fullmatch(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


FPR = r"[0-9A-F]{40}"
VERSION = r"([0-9]+:)?[A-Za-z0-9._+~]+-[0-9]+(\.[0-9]+)?"  # pacman's [epoch:]pkgver-pkgrel


@dataclass(frozen=True)
class InstalledPackage:
    name: str
    version: str
    file: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "file": self.file, "sha256": self.sha256}

    @classmethod
    def from_section(cls, sec: Section) -> InstalledPackage:
        pkg = cls(name=str(sec.text("name", pattern=NAME, what="a package name")),
                  version=str(sec.text("version", pattern=VERSION, what="[epoch:]pkgver-pkgrel")),
                  file=str(sec.text("file", pattern=PKGFILE, what="a package file name")),
                  sha256=str(sec.text("sha256", pattern=HEX64, what="64 lowercase hex digits")))
        sec.done()
        return pkg


@dataclass(frozen=True)
class InstallRecord:
    """The lock's ``install:`` block: the last successful install on the board."""

    installed_at: str
    board: str  # the ssh target
    release: str  # `uname -r` the heartbeat saw
    packages: tuple[InstalledPackage, ...]
    key: str  # fingerprint of the repository key that signed the packages
    replaced: str | None  # version installed before (None: none of ours was installed)
    replaced_release: str
    backup: str  # where the backup of the replaced kernel is

    def to_dict(self) -> dict[str, Any]:
        return {"installed_at": self.installed_at, "board": self.board, "release": self.release,
                "packages": [p.to_dict() for p in self.packages], "key": self.key,
                "replaced": self.replaced, "replaced_release": self.replaced_release, "backup": self.backup}

    @classmethod
    def from_section(cls, sec: Section) -> InstallRecord:
        packages = tuple(InstalledPackage.from_section(s) for s in sec.items("packages"))
        if not packages:
            sec.fail("packages", "expected at least one installed package")
        rec = cls(
            installed_at=str(sec.text("installed_at", what="a UTC timestamp")),
            board=str(sec.text("board", what="an ssh target")),
            release=str(sec.text("release", what="a kernel release")),
            packages=packages,
            key=str(sec.text("key", pattern=FPR, what="a 40-hex-digit fingerprint")),
            replaced=sec.text("replaced", required=False, what="the version replaced"),
            replaced_release=str(sec.text("replaced_release", what="a kernel release")),
            backup=str(sec.text("backup", what="a backup directory")),
        )
        sec.done()
        return rec
