"""The two documents `kabuild install` writes and reads back.

- :class:`InstallRecord`: the lock's ``install:`` block, what is installed on the board now.
- :class:`Journal`: ``build/<host>/install/journal.yaml``, the step an install reached; it exists
  only while an install is unfinished, so a rerun after ``kill -9`` knows what to undo or finish.

Both are frozen dataclasses read through the located reader: a damaged one is one line naming
the file and the key (DocumentError, exit 3).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kabuild.config.document import HEX64, NAME, PKGFILE, yaml_section
from kabuild.config.schema import Section
from kabuild.config.yamlio import dump_yaml
from kabuild.files import atomic_write

JOURNAL_SCHEMA = 1
FPR = r"[0-9A-F]{40}"


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
                  version=str(sec.text("version", what="pkgver-pkgrel")),
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


class Step(enum.StrEnum):
    """The journal's steps, in order.  Before REBOOTING, an unfinished install is undone; from
    REBOOTING on, it is finished (heartbeat) or rolled back."""

    LOCKING = "locking"
    BACKING_UP = "backing-up"
    BACKED_UP = "backed-up"
    UPLOADED = "uploaded"
    FALLBACK_STAGED = "fallback-staged"
    INSTALLING = "installing"  # written just before pacman -U: from here the package db may have changed
    INSTALLED = "installed"
    BOOT_UPDATED = "boot-updated"
    REBOOTING = "rebooting"
    POWER_CYCLED = "power-cycled"
    ROLLING_BACK = "rolling-back"

    @property
    def order(self) -> int:
        return list(Step).index(self)


@dataclass(frozen=True)
class Journal:
    id: str
    started: str
    step: Step
    packages: tuple[InstalledPackage, ...]  # what is being installed (files in build/<host>/install/pkg/)
    release: str  # the new kernel release
    replaced: tuple[InstalledPackage, ...]  # what was installed before (files in the backup)
    replaced_release: str
    backup: str  # the backup directory ("" until known)
    why: str = ""  # why a rollback was started

    def to_dict(self) -> dict[str, Any]:
        return {"schema": JOURNAL_SCHEMA, "id": self.id, "started": self.started, "step": self.step.value,
                "packages": [p.to_dict() for p in self.packages], "release": self.release,
                "replaced": [p.to_dict() for p in self.replaced], "replaced_release": self.replaced_release,
                "backup": self.backup or None, "why": self.why or None}

    @classmethod
    def from_section(cls, sec: Section) -> Journal:
        schema = sec.integer("schema", what=f"the journal schema ({JOURNAL_SCHEMA})")
        if schema != JOURNAL_SCHEMA:
            sec.fail("schema", f"this kabuild reads journal schema {JOURNAL_SCHEMA}, got {schema}")
        step = sec.choice("step", Step)
        assert step is not None
        j = cls(
            id=str(sec.text("id", pattern=r"[0-9A-Za-z-]+", what="an install id")),
            started=str(sec.text("started", what="a UTC timestamp")),
            step=step,
            packages=tuple(InstalledPackage.from_section(s) for s in sec.items("packages")),
            release=str(sec.text("release", what="a kernel release")),
            replaced=tuple(InstalledPackage.from_section(s) for s in sec.items("replaced", required=False)),
            replaced_release=str(sec.text("replaced_release", what="a kernel release")),
            backup=str(sec.text("backup", required=False, default="", what="a directory")),
            why=str(sec.text("why", required=False, default="", what="a reason")),
        )
        sec.done()
        return j

    def at(self, step: Step, **changes: Any) -> Journal:
        return replace(self, step=step, **changes)


def read_journal(path: Path, display: str) -> Journal | None:
    if not path.exists():
        return None
    return Journal.from_section(yaml_section(path, display))


def write_journal(path: Path, journal: Journal) -> Journal:
    atomic_write(path, dump_yaml(journal.to_dict()))
    return journal
