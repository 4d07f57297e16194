"""Culprits from evidence: which variation's value shows where the two builds differ, without a rebuild.

kabuild knows every value it gave build 2 (:data:`kabuild.build.variations.TABLE`, ``forms``).  For
each member that differs, both builds' bytes are read (decompressed when the member is compressed;
lines of text, printable strings of a binary), the lines or strings that only one build has are
set side by side, and each of build 2's is searched for the forms of the values build 2 had: a
hostname, a user name and uid, a home path, a locale's day names, a CPU count, a date in the usual
formats (:mod:`kabuild.compare.dates`).  A variation is named only where build 1's line at the same
place reads the same with build 1's value in that spot, so the value really is the difference.  The
rest of a member's differences stay unmatched, and a member with no such match is "unexplained".
Member order, modes, owners and times are read from both archives and explained the same way.
"""

from __future__ import annotations

import bisect
import bz2
import dataclasses
import gzip
import lzma
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kabuild.build import variations
from kabuild.compare import dates, members
from kabuild.compare.differences import MemberComparison
from kabuild.compare.explanation import Explanation, Finding, FindingKind, MemberExplanation, MemberState
from kabuild.compare.forms import Conditions, Matcher, clip
from kabuild.errors import KabuildError

MAX_MEMBER = 256 * 2**20  # bytes of one member (after decompression) that are searched
MAX_UNITS = 200_000  # lines or strings of one member that are compared
MIN_STRING = 6  # printable run that counts as a string of a binary (random data rarely has one)
NEAREST = 24  # build-1 candidates tried for one line of build 2, nearest position first
MAX_FINDINGS = 8  # per member and kind of evidence, in the report
MAX_METADATA = 50  # members whose mode/owner/mtime differ, listed one by one; the rest in one line

# --------------------------------------------------------------------------- one member


def _decompressed(data: bytes) -> tuple[bytes, str]:
    """The member's content, decompressed when it is gzip, xz, bzip2 or zstd; and what it was."""
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)[:MAX_MEMBER], "gzip"
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(data)[:MAX_MEMBER], "xz"
        if data[:3] == b"BZh":
            return bz2.decompress(data)[:MAX_MEMBER], "bzip2"
        if data[:4] == b"\x28\xb5\x2f\xfd":
            return _zstd(data), "zstd"
    except (OSError, EOFError, lzma.LZMAError, ValueError, zlib.error, KabuildError):
        pass
    return data, ""


def _zstd(data: bytes) -> bytes:
    from kabuild import tools
    from kabuild.process import run

    proc = run([tools.find("zstd"), "-q", "-d", "-c"], input=data, text=False, timeout=600)
    return bytes(proc.stdout)[:MAX_MEMBER]


_STRINGS = re.compile(rb"[\x20-\x7e\t]{%d,}" % MIN_STRING)


def units(data: bytes) -> list[str]:
    """Lines of a text, printable strings of a binary."""
    if b"\0" in data[:8192]:
        return [m.group().decode("ascii") for m in _STRINGS.finditer(data)][:MAX_UNITS]
    return data.decode("utf-8", "replace").splitlines()[:MAX_UNITS]


def _residual(a: list[str], b: list[str]) -> list[tuple[int, str]]:
    """The lines of ``a`` that ``b`` does not have (as many times as ``a`` has more), with positions."""
    extra = Counter(a)
    extra.subtract(Counter(b))
    out = []
    for i, line in enumerate(a):
        if extra[line] > 0:
            out.append((i, line))
            extra[line] -= 1
    return out


@dataclass
class _Member:
    findings: list[Finding]
    unmatched: list[str]  # lines of build 2 nothing explains
    moved: list[str]  # lines of build 2 that differ from build 1's at their place only in addresses


_ADDRESS = re.compile(r"\b(?:0x)?[0-9a-f]{6,16}\b")


def _nearest(rel1: list[float], target: float, used: set[int], limit: int) -> list[int]:
    """Indices into build 1's residual lines, nearest ``target`` (a relative position) first."""
    i = bisect.bisect_left(rel1, target)
    lo, hi = i - 1, i
    out: list[int] = []
    while len(out) < limit and (lo >= 0 or hi < len(rel1)):
        if hi < len(rel1) and (lo < 0 or rel1[hi] - target <= target - rel1[lo]):
            j, hi = hi, hi + 1
        else:
            j, lo = lo, lo - 1
        if j not in used:
            out.append(j)
    return out


def compare_lines(name: str, lines1: list[str], lines2: list[str], matcher: Matcher) -> _Member:
    """Each line only build 2 has, set against build 1's lines nearest its place."""
    r1, r2 = _residual(lines1, lines2), _residual(lines2, lines1)
    n1, n2 = max(len(lines1), 1), max(len(lines2), 1)
    rel1 = [p1 / n1 for p1, _ in r1]
    used: set[int] = set()
    result = _Member([], [], [])
    for pos2, s2 in r2:
        near = _nearest(rel1, pos2 / n2, used, NEAREST)
        parts = matcher.template(s2)
        if parts is not None and any(k for k, _ in parts):
            anchor = max((t for k, t in parts if not k), key=len, default="")
            found = None
            for j in near:
                if anchor and anchor not in r1[j][1]:
                    continue
                found = matcher.match(parts, r1[j][1], name)
                if found is not None:
                    used.add(j)
                    result.findings += [dataclasses.replace(f, context=clip(s2)) for f in found]
                    break
            if found is not None:
                continue
        moved = _ADDRESS.sub("#", s2)
        # an address next to what it addresses (a symbol, a section): a bare digest is no address
        labelled = moved != s2 and len(re.sub(r"[#\s]", "", moved)) >= 3
        partner = next((j for j in near[:4] if labelled and _ADDRESS.sub("#", r1[j][1]) == moved), None)
        if partner is not None:
            used.add(partner)
            result.moved.append(s2)
        else:
            result.unmatched.append(s2)
    return result


def explain_member(name: str, data1: bytes, data2: bytes, matcher: Matcher, changed: set[str]) -> tuple[
        MemberExplanation, list[Finding]]:
    plain1, how1 = _decompressed(data1)
    plain2, how2 = _decompressed(data2)
    if how1 == how2 == "gzip" and plain1 == plain2:
        return _gzip_header(name, data1, data2, matcher)
    result = compare_lines(name, units(plain1), units(plain2), matcher)
    derived = [s for s in result.unmatched if _derived(name, s, changed)]
    left = len(result.unmatched) - len(derived)
    if result.findings:
        state = MemberState.EXPLAINED
    elif plain1 != plain2 and not left and (derived or result.moved or name == ".MTREE"):
        state = MemberState.DERIVED  # only digests/sizes of other members, their order, or moved addresses
    else:
        state = MemberState.UNEXPLAINED
    found = _dedupe(result.findings)
    if state is MemberState.DERIVED:
        if derived:
            what, example = "records the digests and sizes of the members that differ", derived[0]
        elif result.moved:
            what, example = ("only addresses differ: the layout moved, as it does when something before it changed "
                             "size"), result.moved[0]
        else:
            what, example = "lists the same entries in another order", ""
        found = [Finding(name, FindingKind.DERIVED, (), "", "", what, clip(example))]
    return (MemberExplanation(name, state, _named(found), left), found)


def _derived(member: str, line: str, changed: set[str]) -> bool:
    """A .MTREE entry of a member that differs itself, or .PKGINFO's installed size."""
    if member == ".MTREE":
        path = line.split(" ", 1)[0]
        path = path[2:] if path.startswith("./") else path
        return path in changed
    return member == ".PKGINFO" and line.startswith("size = ")


def _gzip_header(name: str, data1: bytes, data2: bytes, matcher: Matcher) -> tuple[MemberExplanation, list[Finding]]:
    """The same compressed data with another gzip header: its time (bytes 4-8) or file name."""
    t1, t2 = int.from_bytes(data1[4:8], "little"), int.from_bytes(data2[4:8], "little")
    found = []
    if t1 != t2:
        why = dates.explain(str(t1), str(t2), matcher.cond.first, matcher.cond.second,
                            timezone=matcher.cond.timezone, clock=matcher.cond.clock)
        found.append(Finding(name, FindingKind.GZIP, why.variations, str(t1), str(t2),
                             "gzip header time" + (f"; {why.what}" if why.what else ""), own_time=why.own_time))
    n1, n2 = _gzip_name(data1), _gzip_name(data2)
    if n1 != n2:
        parts = matcher.template(n2)
        got = matcher.match(parts, n1, name) if parts else None
        found.append(Finding(name, FindingKind.GZIP, _named(got or []), n1, n2, "gzip header file name"))
    state = MemberState.EXPLAINED if found else MemberState.UNEXPLAINED
    return MemberExplanation(name, state, _named(found)), found


def _gzip_name(data: bytes) -> str:
    if len(data) < 10 or not data[3] & 0x08:
        return ""
    at = 10 + (2 + int.from_bytes(data[10:12], "little") if data[3] & 0x04 else 0)
    end = data.find(b"\0", at)
    return data[at:end].decode("latin-1") if end > at else ""


def _named(found: Iterable[Finding]) -> tuple[str, ...]:
    names = {v for f in found for v in f.variations}
    return tuple(v.value for v in variations.ORDER if v.value in names)


def _dedupe(found: list[Finding]) -> list[Finding]:
    seen: dict[tuple, int] = {}
    out = []
    for f in found:
        key = (f.kind, f.variations, f.build1, f.build2)
        if key in seen:
            continue
        per_kind = sum(1 for k in seen if k[:2] == key[:2])
        seen[key] = 1
        if per_kind < MAX_FINDINGS:
            out.append(f)
    return out


# --------------------------------------------------------------------------- a package


@dataclass
class _Archive:
    infos: list[tarfile.TarInfo]
    data: dict[str, bytes]


def _read(package: Path, wanted: set[str], scratch: Path) -> _Archive:
    tar = members.tar_of(package, scratch)
    infos, data = [], {}
    with tarfile.open(tar, mode="r:*") as tf:
        for info in tf:
            infos.append(info)
            if info.name in wanted and info.isfile():
                src = tf.extractfile(info)
                data[info.name] = src.read(MAX_MEMBER) if src is not None else b""
    return _Archive(infos, data)


def explain(first: Path, second: Path, found: MemberComparison, cond: Conditions) -> Explanation:
    """The differences of two packages explained from their bytes."""
    t0 = time.monotonic()
    wanted = set(found.content)
    scratch = Path(tempfile.mkdtemp(prefix="kabuild-evidence-"))
    try:
        (scratch / "1").mkdir()
        (scratch / "2").mkdir()
        a, b = _read(first, wanted, scratch / "1"), _read(second, wanted, scratch / "2")
    except (tarfile.TarError, OSError, EOFError) as e:
        return Explanation((), (), (), error=f"{type(e).__name__}: {e}", seconds=time.monotonic() - t0)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    matcher = Matcher(cond)
    explained: list[MemberExplanation] = []
    findings: list[Finding] = []
    changed = set(found.content)
    for name in sorted(wanted):
        m, f = explain_member(name, a.data.get(name, b""), b.data.get(name, b""), matcher, changed)
        explained.append(m)
        findings += f
    for extra, f in (_only_in_one(found, matcher), _order(a, b, cond), *_metadata(a, b, matcher)):
        if extra is not None:
            explained.append(extra)
            findings += f
    if not explained:
        # the archives differ, yet no member, name, order or metadata does: only the compression or the
        # tar headers (pax records); nothing here can name a variation for that
        explained.append(MemberExplanation(f"(archive: {found.kind})", MemberState.UNEXPLAINED))
    own = any(f.own_time for f in findings)
    return Explanation(_named(findings), tuple(explained), tuple(findings), own_time=own,
                       seconds=round(time.monotonic() - t0, 2))


def _only_in_one(found: MemberComparison, matcher: Matcher) -> tuple[MemberExplanation | None, list[Finding]]:
    if not found.only_in_first and not found.only_in_second:
        return None, []
    result = compare_lines("(member names)", list(found.only_in_first), list(found.only_in_second), matcher)
    result.unmatched += result.moved
    state = MemberState.EXPLAINED if result.findings and not result.unmatched else MemberState.UNEXPLAINED
    return MemberExplanation("(member names)", state, _named(result.findings), len(result.unmatched)), \
        _dedupe(result.findings)


def _order(a: _Archive, b: _Archive, cond: Conditions) -> tuple[MemberExplanation | None, list[Finding]]:
    n1, n2 = [i.name for i in a.infos], [i.name for i in b.infos]
    if n1 == n2 or sorted(n1) != sorted(n2):
        return None, []
    i = next(k for k, (x, y) in enumerate(zip(n1, n2, strict=True)) if x != y)
    x, y = n1[i], n2[i]  # build 1 lists x where build 2 lists y: y comes later in build 1
    c_order = x.encode() < y.encode()  # build 1 follows C (bytewise) collation at this pair
    who = cond.collation if c_order else ()
    what = ("build 1 orders them bytewise (LC_COLLATE=C), build 2 by its locale" if who else
            "the members are in another order")
    f = Finding("(member order)", FindingKind.ORDER, who, f"{x} before {y}", f"{y} before {x}", what)
    state = MemberState.EXPLAINED if who else MemberState.UNEXPLAINED
    return MemberExplanation("(member order)", state, who), [f]


def _metadata(a: _Archive, b: _Archive, matcher: Matcher) -> list[tuple[MemberExplanation | None, list[Finding]]]:
    second = {i.name: i for i in b.infos}
    out: list[tuple[MemberExplanation | None, list[Finding]]] = []
    cond = matcher.cond
    for x in a.infos:
        y = second.get(x.name)
        if y is None:
            continue
        found: list[Finding] = []
        unexplained = False
        if x.mode != y.mode:
            moved = x.mode ^ y.mode
            if cond.umask and not moved & ~(cond.umask[1] ^ cond.umask[2]):
                found.append(Finding(x.name, FindingKind.METADATA, (cond.umask[0],), f"{x.mode:04o}",
                                     f"{y.mode:04o}", "mode: the bits the two umasks differ in"))
            else:
                unexplained = True
        for t1, t2 in ((f"{x.uid}:{x.gid}", f"{y.uid}:{y.gid}"), (x.uname, y.uname)):
            if t1 != t2:
                parts = matcher.template(t2)
                got = matcher.match(parts, t1, x.name) if parts else None
                if got:
                    found += [dataclasses.replace(g, kind=FindingKind.METADATA, what="owner") for g in got]
                else:
                    unexplained = True
        if int(x.mtime) != int(y.mtime):
            why = dates.explain(str(int(x.mtime)), str(int(y.mtime)), cond.first, cond.second,
                                timezone=cond.timezone, clock=cond.clock)
            if why.explained:
                found.append(Finding(x.name, FindingKind.METADATA, why.variations, str(int(x.mtime)),
                                     str(int(y.mtime)), "mtime" + (f"; {why.what}" if why.what else ""),
                                     own_time=why.own_time))
            else:
                unexplained = True
        if found or unexplained:
            state = MemberState.UNEXPLAINED if unexplained and not found else MemberState.EXPLAINED
            out.append((MemberExplanation(f"{x.name} (metadata)", state, _named(found)), _dedupe(found)))
    if len(out) <= MAX_METADATA:
        return out
    rest = out[MAX_METADATA:]
    state = MemberState.UNEXPLAINED if any(m and m.state is MemberState.UNEXPLAINED for m, _ in rest) \
        else MemberState.EXPLAINED
    named = _named(f for _, found in rest for f in found)
    summary = MemberExplanation(f"(+{len(rest)} more members whose metadata differs)", state, named)
    return out[:MAX_METADATA] + [(summary, [])]
