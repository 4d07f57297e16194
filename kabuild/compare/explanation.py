"""Why two builds of a package differ, as found in their bytes (from evidence, not rebuilt).

:mod:`kabuild.compare.evidence` fills these values; :mod:`kabuild.compare.hints` adds the known
causes; the acceptance report (:mod:`kabuild.compare.acceptance`) carries them and reads them back
through the located reader like the rest of the report.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from kabuild.config.schema import Section

SOURCE = "evidence"  # how the variations were named: from the bytes, without a rebuild
MARK = "from evidence, not rebuilt"


class FindingKind(enum.StrEnum):
    VALUE = "value"  # a value a variation set, where build 1 has its own
    DATE = "date"  # a date or time the timezone or the clock moved, or the build's own time
    ORDER = "order"  # the members are in another order
    METADATA = "metadata"  # mode, owner or mtime of a member
    GZIP = "gzip"  # a gzip header (time or name) while the compressed data is the same
    DERIVED = "derived"  # .MTREE / .PKGINFO recording what other members' differences made


class MemberState(enum.StrEnum):
    EXPLAINED = "explained"  # at least one difference of the member is explained
    DERIVED = "derived"  # it only records other members' differences (digests, sizes, order)
    UNEXPLAINED = "unexplained"  # it differs, and no variation's value shows where it does


@dataclass(frozen=True)
class Finding:
    """One difference, explained: build 2's text where build 1 has its own, and by what."""

    member: str
    kind: FindingKind
    variations: tuple[str, ...]  # () when no variation explains it (the build's own time, derived)
    build1: str
    build2: str
    what: str = ""  # e.g. "hostname", "UTC offset +0000 -> +1400"
    context: str = ""  # the line or string of build 2 it was found in (clipped)
    own_time: bool = False  # the bytes carry the time the build ran

    def sentence(self) -> str:
        """``member: "kabuild-experiment" where build 1 has "kabuild-build" (hostname)``."""
        if self.kind is FindingKind.DERIVED:
            return f"{self.member}: {self.what}"
        why = ", ".join(self.variations) or ("the build's own time" if self.own_time else self.what or str(self.kind))
        extra = f"; {self.what}" if self.what and self.variations else ""
        return f'{self.member}: "{self.build2}" where build 1 has "{self.build1}" ({why}{extra})'

    def to_dict(self) -> dict[str, Any]:
        return {"member": self.member, "kind": str(self.kind), "variations": list(self.variations),
                "build1": self.build1, "build2": self.build2, "what": self.what, "context": self.context,
                "own_time": self.own_time}

    @classmethod
    def from_section(cls, sec: Section) -> Finding:
        f = cls(str(sec.text("member", controls=True)), sec.choice("kind", FindingKind), sec.texts("variations"),
                _string(sec, "build1"), _string(sec, "build2"), _string(sec, "what"), _string(sec, "context"),
                sec.flag("own_time"))
        sec.done()
        return f


@dataclass(frozen=True)
class Hint:
    """A known cause, with its fix, and the evidence that it is this one."""

    cause: str
    hint: str
    evidence: str

    def to_dict(self) -> dict[str, Any]:
        return {"cause": self.cause, "hint": self.hint, "evidence": self.evidence}

    @classmethod
    def from_section(cls, sec: Section) -> Hint:
        h = cls(str(sec.text("cause")), str(sec.text("hint")), str(sec.text("evidence", controls=True)))
        sec.done()
        return h


@dataclass(frozen=True)
class MemberExplanation:
    member: str
    state: MemberState
    variations: tuple[str, ...] = ()
    unmatched: int = 0  # differing lines/strings of build 2 no form explains (compressed data, digests)

    def to_dict(self) -> dict[str, Any]:
        return {"member": self.member, "state": str(self.state), "variations": list(self.variations),
                "unmatched": self.unmatched}

    @classmethod
    def from_section(cls, sec: Section) -> MemberExplanation:
        m = cls(str(sec.text("member", controls=True)), sec.choice("state", MemberState), sec.texts("variations"),
                int(sec.integer("unmatched", minimum=0, required=False) or 0))
        sec.done()
        return m


@dataclass(frozen=True)
class Explanation:
    """A package's differences explained from its bytes: the variations named, with evidence."""

    variations: tuple[str, ...]  # named from evidence, in the variation table's order
    members: tuple[MemberExplanation, ...]
    findings: tuple[Finding, ...]
    hints: tuple[Hint, ...] = ()
    own_time: bool = False  # the bytes carry the time the build ran: it differs without any variation
    seconds: float = 0.0
    error: str | None = None  # the search could not run (unreadable archive, ...)

    @property
    def unexplained(self) -> tuple[str, ...]:
        return tuple(m.member for m in self.members if m.state is MemberState.UNEXPLAINED)

    def summary(self) -> str:
        """One line: what was named, what was not."""
        parts = []
        if self.variations:
            parts.append(f"{', '.join(self.variations)} ({MARK})")
        if self.own_time:
            parts.append("the build's own time is in the bytes")
        if self.unexplained:
            parts.append(f"unexplained: {_some(self.unexplained)}")
        if self.error:
            parts.append(f"evidence search failed: {self.error}")
        return "; ".join(parts) or "no variation's value shows in the differing members"

    def to_dict(self) -> dict[str, Any]:
        return {"source": SOURCE, "marked": MARK, "variations": list(self.variations), "unexplained": list(self.unexplained),
                "own_time": self.own_time, "members": [m.to_dict() for m in self.members],
                "findings": [f.to_dict() for f in self.findings], "hints": [h.to_dict() for h in self.hints],
                "seconds": self.seconds, "error": self.error}

    @classmethod
    def from_section(cls, sec: Section) -> Explanation:
        if sec.text("source") != SOURCE:
            sec.fail("source", f"expected {SOURCE!r}")
        if sec.text("marked") != MARK:
            sec.fail("marked", f"expected {MARK!r}")
        e = cls(sec.texts("variations"),
                tuple(MemberExplanation.from_section(s) for s in sec.items("members", required=False)),
                tuple(Finding.from_section(s) for s in sec.items("findings", required=False)),
                tuple(Hint.from_section(s) for s in sec.items("hints", required=False)),
                sec.flag("own_time"), float(sec.number("seconds", minimum=0) or 0.0),
                sec.text("error", required=False, controls=True))
        listed = sec.texts("unexplained", controls=True)
        if listed != e.unexplained:
            sec.fail("unexplained", f"{list(listed)} contradicts the members' states ({list(e.unexplained)})")
        sec.done()
        return e


def _string(sec: Section, key: str) -> str:
    """A string that may be empty (a value build 1 did not have is written as "")."""
    sec.seen.add(key)
    value = sec.data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        sec.fail(key, f"expected a string, got {type(value).__name__}")
    return value


def _some(items: tuple[str, ...], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")
