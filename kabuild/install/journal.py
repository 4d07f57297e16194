"""The install journal, ``build/<host>/install/journal.yaml``: the step an install reached.

It exists only while an install is unfinished, so a rerun after ``kill -9`` knows what to undo or
finish.  What is installed now is the lock's ``install:`` block (:mod:`kabuild.inputs.records`).
Read through the located reader like the other documents kabuild writes: a damaged or hand-edited journal
is one line naming the file, line and key (exit 3), also when its keys do not fit its step.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kabuild.config.document import yaml_section
from kabuild.config.schema import Section
from kabuild.config.yamlio import dump_yaml
from kabuild.files import atomic_write
from kabuild.inputs.records import InstalledPackage

JOURNAL_SCHEMA = 1
TIMESTAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})"
RELEASE = r"[A-Za-z0-9][A-Za-z0-9._+~-]*"  # `uname -r`: 6.12.107-1-fresnel, 6.0.0-factory


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
    made: tuple[str, ...] = ()  # kabuild's directories on the board that this install created (an undo removes them)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": JOURNAL_SCHEMA, "id": self.id, "started": self.started, "step": self.step.value,
                "packages": [p.to_dict() for p in self.packages], "release": self.release,
                "replaced": [p.to_dict() for p in self.replaced], "replaced_release": self.replaced_release,
                "backup": self.backup or None, "why": self.why or None, "made": list(self.made)}

    @classmethod
    def from_section(cls, sec: Section) -> Journal:
        """Every key typed, and the keys consistent with the step: a hand edit that leaves a journal the
        recovery cannot act on is refused here (exit 3), naming the key, before the board is touched."""
        schema = sec.integer("schema", what=f"the journal schema ({JOURNAL_SCHEMA})")
        if schema != JOURNAL_SCHEMA:
            sec.fail("schema", f"this kabuild reads journal schema {JOURNAL_SCHEMA}, got {schema}")
        step = sec.choice("step", Step)
        packages = tuple(InstalledPackage.from_section(s) for s in sec.items("packages"))
        if not packages:
            sec.fail("packages", "expected at least one package being installed")
        names = [pkg.name for pkg in packages]
        if len(set(names)) != len(names):
            sec.fail("packages", f"a package is listed twice ({', '.join(names)})")
        replaced = tuple(InstalledPackage.from_section(s) for s in sec.items("replaced", required=False))
        for i, old in enumerate(replaced):
            if old.name not in names or [r.name for r in replaced].count(old.name) > 1:
                sec.fail("replaced", f"item {i}: {old.name} is not one of the packages being installed once "
                                     f"({', '.join(names)})", sec.item_line("replaced", i))
        backup = str(sec.text("backup", required=False, default="", what="the backup directory (an absolute path)",
                              pattern=r"/.*"))
        if not backup and step.order >= Step.BACKED_UP.order:
            sec.fail("backup", f"step {step} comes after the backup, but the journal names no backup directory")
        why = str(sec.text("why", required=False, default="", what="a reason", controls=True))
        if not why and step is Step.ROLLING_BACK:
            sec.fail("why", "a rollback is recorded without its reason")
        j = cls(
            id=str(sec.text("id", pattern=r"[0-9A-Za-z][0-9A-Za-z-]*", what="an install id")),
            started=str(sec.text("started", pattern=TIMESTAMP, what="a UTC timestamp")),
            step=step,
            packages=packages,
            release=str(sec.text("release", pattern=RELEASE, what="a kernel release (uname -r)")),
            replaced=replaced,
            replaced_release=str(sec.text("replaced_release", pattern=RELEASE, what="a kernel release (uname -r)")),
            backup=backup,
            why=why,
            made=sec.texts("made", pattern=r"/var/(lib|cache)/kabuild(/[a-z]+)?", what="a directory kabuild made"),
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
