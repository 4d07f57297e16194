"""How two packages compared: per-member hashes first, then diffoscope on what differs.

Part of the acceptance report (:mod:`kabuild.compare.acceptance`): :mod:`kabuild.compare.members` and
:mod:`kabuild.compare.diffoscope` produce these values, the report renders them, and they are read back
through the located reader like the rest of the report.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kabuild.config.document import run_path
from kabuild.config.schema import Section

# --------------------------------------------------------------------------- diffoscope


class DiffStatus(enum.StrEnum):
    SAME = "same"
    DIFFERENT = "different"
    ERROR = "error"


@dataclass(frozen=True)
class DiffResult:
    """What diffoscope said about one pair; paths absolute until :meth:`relative_to`."""

    status: DiffStatus
    files: tuple[str, ...] = ()  # differing members, sorted
    html: str | None = None
    text: str | None = None
    json: str | None = None
    error: str | None = None  # one line, only for ERROR
    truncated: bool = False  # a size/line limit cut diffoscope's output somewhere
    cut: tuple[str, ...] = ()  # commands left out (diffoscope --exclude-command), counted

    def relative_to(self, base: Path) -> DiffResult:
        def rel(p: str | None) -> str | None:
            return None if p is None else os.path.relpath(p, Path(base).resolve())
        return replace(self, html=rel(self.html), text=rel(self.text), json=rel(self.json))

    def to_dict(self) -> dict[str, Any]:
        return {"status": str(self.status), "files": list(self.files), "html": self.html, "text": self.text,
                "json": self.json, "error": self.error, "truncated": self.truncated, "cut": list(self.cut)}

    @classmethod
    def from_section(cls, sec: Section) -> DiffResult:
        r = cls(status=sec.choice("status", DiffStatus),
                files=sec.texts("files", controls=True), html=run_path(sec, "html"), text=run_path(sec, "text"),
                json=run_path(sec, "json"), error=sec.text("error", required=False, controls=True),
                truncated=sec.flag("truncated"), cut=sec.texts("cut", controls=True))
        sec.done()
        return r


# --------------------------------------------------------------------------- members


@dataclass(frozen=True)
class MemberChange:
    """One archive member whose metadata (not content) differs, or whose position moved."""

    name: str
    what: str  # "mode 0644 -> 0664", "position 3 -> 5", ...

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "what": self.what}


class ArchiveDifference(enum.StrEnum):
    NONE = "none"  # identical archives
    CONTENT = "content"  # at least one member's bytes differ (or a member exists on one side only)
    METADATA = "metadata"  # same members and bytes; mode, owner, mtime, link target ... differ
    ORDER = "order"  # same members, bytes and metadata; the order in the archive differs
    COMPRESSION = "compression"  # the same tar stream, compressed differently
    UNKNOWN = "unknown"  # the archives could not be read


@dataclass(frozen=True)
class MemberComparison:
    """Both packages hashed member by member: what differs, named, before diffoscope runs."""

    kind: ArchiveDifference
    content: tuple[str, ...] = ()  # members whose bytes differ
    only_in_first: tuple[str, ...] = ()
    only_in_second: tuple[str, ...] = ()
    metadata: tuple[MemberChange, ...] = ()
    order: tuple[MemberChange, ...] = ()  # the first entries whose position differs
    members: int = 0  # members in the first archive
    error: str | None = None

    @property
    def culprits(self) -> tuple[str, ...]:
        """The members to name and to explain with diffoscope."""
        return tuple(sorted(set(self.content) | set(self.only_in_first) | set(self.only_in_second)))

    def summary(self, limit: int = 5) -> str:
        def some(items: tuple[str, ...]) -> str:
            return ", ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
        if self.kind is ArchiveDifference.CONTENT:
            parts = []
            if self.content:
                parts.append(f"{len(self.content)} member(s) differ: {some(self.content)}")
            if self.only_in_first:
                parts.append(f"only in the first: {some(self.only_in_first)}")
            if self.only_in_second:
                parts.append(f"only in the second: {some(self.only_in_second)}")
            return "; ".join(parts)
        if self.kind is ArchiveDifference.METADATA:
            return "member metadata only: " + some(tuple(f"{c.name} {c.what}" for c in self.metadata))
        if self.kind is ArchiveDifference.ORDER:
            return "member order only, first at " + some(tuple(f"{c.name} {c.what}" for c in self.order))
        if self.kind is ArchiveDifference.COMPRESSION:
            return "compression only: the uncompressed tar streams are identical"
        if self.kind is ArchiveDifference.UNKNOWN:
            return f"archives not comparable member by member: {self.error}"
        return "identical"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "content": list(self.content), "only_in_first": list(self.only_in_first),
                "only_in_second": list(self.only_in_second), "metadata": [c.to_dict() for c in self.metadata],
                "order": [c.to_dict() for c in self.order], "members": self.members, "error": self.error}

    @classmethod
    def from_section(cls, sec: Section) -> MemberComparison:
        def changes(key: str) -> tuple[MemberChange, ...]:
            out = []
            for s in sec.items(key, required=False):
                out.append(MemberChange(str(s.text("name", controls=True)), str(s.text("what", controls=True))))
                s.done()
            return tuple(out)
        m = cls(kind=sec.choice("kind", ArchiveDifference),
                content=sec.texts("content", controls=True), only_in_first=sec.texts("only_in_first", controls=True),
                only_in_second=sec.texts("only_in_second", controls=True), metadata=changes("metadata"), order=changes("order"),
                members=int(sec.integer("members", minimum=0) or 0),
                error=sec.text("error", required=False, controls=True))
        sec.done()
        return m


@dataclass(frozen=True)
class Comparison:
    """One pair (build 1 vs build 2, or build 1 vs the reference): members first, then diffoscope."""

    members: MemberComparison | None
    diffoscope: DiffResult | None

    def to_dict(self) -> dict[str, Any]:
        return {"members": self.members.to_dict() if self.members else None,
                "diffoscope": self.diffoscope.to_dict() if self.diffoscope else None}

    @classmethod
    def from_section(cls, sec: Section) -> Comparison:
        ms, ds = sec.section("members", required=False), sec.section("diffoscope", required=False)
        c = cls(MemberComparison.from_section(ms) if ms else None, DiffResult.from_section(ds) if ds else None)
        sec.done()
        return c
