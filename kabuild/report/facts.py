"""The facts of an acceptance report, as lines of inline segments.

The Markdown and HTML renderers (:mod:`kabuild.report.render`) draw from the same facts, so they
say the same things.  A segment is one of::

    ("t", text)            plain text
    ("c", text)            code (hashes, paths, tags)
    ("b", text)            emphasis
    ("a", label, href)     a link (href relative to the run dir)
    ("badge", tone, text)  a badge, tone in ok / bad / na / warn
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from typing import Any

from kabuild.compare.acceptance import VERDICT_TEXT, BuiltArtifact, Culprits, PackageResult, ReferenceSeen, Report
from kabuild.compare.differences import ArchiveDifference, Comparison, DiffResult, DiffStatus
from kabuild.compare.explanation import MARK, MemberState

MAX_FILES_SHOWN = 100  # members listed per comparison; the rest is in diffoscope's output

Seg = tuple
Line = list  # of Seg


def show(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, ensure_ascii=False, default=str)
    return str(v)


def text(s: Any) -> Seg:
    return ("t", show(s))


def code(s: Any) -> Seg:
    return ("c", show(s))


def bold(s: Any) -> Seg:
    return ("b", show(s))


def badge(tone_: str, s: Any) -> Seg:
    return ("badge", tone_, show(s))


def tone(word: Any) -> str:
    """Badge colour for a verdict or a yes/no value."""
    if word is True or word in ("accepted", "yes", "same"):
        return "ok"
    if word in (None, "n/a", "no-reference", "unknown"):
        return "na"
    return "bad"


def short(h: Any) -> str:
    return str(h)[:12] if h else "—"


def yes_no(v: bool | None) -> str:
    return "n/a" if v is None else ("yes" if v else "no")


def duration(v: float) -> str:
    if v < 60:
        return f"{v:.1f} s"
    m, s = divmod(int(round(v)), 60)
    h, m = divmod(m, 60)
    return f"{v:.1f} s ({h} h {m} min {s} s)" if h else f"{v:.1f} s ({m} min {s} s)"


def epoch(v: int) -> str:
    try:
        when = _dt.datetime.fromtimestamp(v, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(v)
    return f"{v} ({when})"


def some(items: Sequence[Any], n: int = 5) -> str:
    return ", ".join(map(show, items[:n])) + (f" (+{len(items) - n} more)" if len(items) > n else "")


# --------------------------------------------------------------------------------------------
# The run


def engine_words(r: Report) -> str:
    """What the headline says next to the verdict when the builds did not run on the two engines the
    manifest named: a fallback, or a single-engine run ("" otherwise)."""
    n1, n2 = r.build1_node, r.build2_node
    if r.same_engine:
        why = f" ({n2.requested} did not answer)" if n2.fell_back else ""
        return f"single-engine: both builds ran on {n1.node}{why}"
    if n2.fell_back:
        return f"build 2 ran on fallback {n2.node} ({n2.requested} did not answer)"
    if n1.fell_back:
        return f"build 1 ran on fallback {n1.node} ({n1.requested} did not answer)"
    return ""


def run_facts(r: Report) -> list[tuple[str, Line]]:
    name, version, ref = r.baseline
    facts: list[tuple[str, Line]] = [
        ("Baseline", [bold(f"{name} {version}"), text(" (ref "), code(ref), text(")")]),
        ("Lock hash", [code(r.lock_hash), text(" in "), code(r.lock_path)]),
        ("SOURCE_DATE_EPOCH", [text(epoch(r.source_date_epoch))]),
        ("Build image", [code(r.image.tag), text(" id "), code(r.image.id), text(" · recipe hash "),
                         code(r.image.recipe_hash), text(f" · {r.image.flavor} / {r.image.arch}")]),
        *((("Image used" if len(r.images) == 1 else f"Image used ({i + 1})"),
           [code(u.image.tag), text(" id "), code(u.image.id),
            text(f" · {len(u.packages)} packages (toolchain and build dependencies), the same image on both engines")])
          for i, u in enumerate(r.images)),
        ("Build mode", [badge("warn" if str(r.build_mode) != "native" else "ok", r.build_mode),
                        text(f" — {r.arch} packages built on {r.node_arch} engines"
                             + (" with a cross toolchain" if str(r.build_mode) == "cross" else "")
                             + (" through qemu emulation" if str(r.build_mode) == "emulated" else ""))]),
    ]
    for label, n, cond in (("Build 1 node", r.build1_node, r.control), ("Build 2 node", r.build2_node, r.experiment)):
        line: Line = [code(n.node)]
        if n.requested != n.node:
            line += [text(" (requested "), code(n.requested), text(")")]
        if n.cpus is not None:
            line.append(text(f" · built with {show(cond.get('cpus'))} of its {n.cpus} CPU(s)"))
        if n.fell_back:
            line += [text(" "), badge("warn", "fell back")]
            if n.reason:
                line.append(text(": " + n.reason))
        facts.append((label, line))
    if r.same_engine:
        facts.append(("Engines", [badge("warn", "single-engine"),
                                  text(": both builds ran on the same Docker engine: the node variation was not "
                                       "exercised (the publish gate refuses this unless build.single_engine: allowed)")]))
    else:
        facts.append(("Engines", [text("two different Docker engines")]))
    facts.append(("Variations applied", [text(", ".join(r.variations) if r.variations else "none")]))
    facts.append(("Duration", [text(f"{duration(r.duration)} · started {r.started_at} · finished {r.finished_at}")]))
    if r.timings:
        spent = dict(r.timings)
        explaining = sum(spent.get(p, 0.0) for p in EXPLAINING)
        facts.append(("Time by phase", [text(f"builds {duration(spent.get('builds (wall clock)', 0.0))} · explaining "
                                             f"{duration(explaining)} ({', '.join(EXPLAINING)})")]))
        facts += [("", [text(f"{p}: {duration(t)}")]) for p, t in r.timings]
    if r.answered_from:
        facts.append(("Answered from", [code(r.answered_from)]))
    return facts


EXPLAINING = ("member hashing", "evidence", "diffoscope")  # the phases after the builds that explain them
VARIATION_HEADER = ("variation", "what build 2 changes", "build 1 (control)", "build 2 (experiment)")


def variation_rows(r: Report) -> list[tuple[str, str, str, str]]:
    """One row per applied variation, from the variation table (kabuild.build.variations): the exact
    settings it changes and the values both builds had; then the build path, which is never varied."""
    rows = [(c.name, c.sets, c.control, c.experiment) for c in r.changes]
    path = (show(r.control.get("build_path")), show(r.experiment.get("build_path")))
    if path != ("—", "—"):
        rows.append(("build path", "never varied (.BUILDINFO records it)", *path))
    return rows


def summary_rows(r: Report) -> list[dict[str, str]]:
    return [{
        "name": p.label,
        "build1": short(p.build1.digest.sha256 if p.build1 else None),
        "build2": short(p.build2.digest.sha256 if p.build2 else None),
        "reference": short(p.reference.digest.sha256 if p.reference else None),
        "reproducible": yes_no(p.reproducible if p.build1 and p.build2 else None),
        "parity": yes_no(p.parity),
        "verdict": str(p.verdict),
    } for p in r.packages]


# --------------------------------------------------------------------------------------------
# A package


def _links(diff: DiffResult) -> Line:
    out: Line = []
    for href, label in ((diff.html, "diffoscope HTML"), (diff.text, "text"), (diff.json, "JSON")):
        if href:
            if out:
                out.append(text(" · "))
            out.append(("a", label, href))
    return out


def comparison_facts(label: str, c: Comparison | None) -> list[tuple[str, Line]]:
    if c is None:
        return []
    facts: list[tuple[str, Line]] = []
    m = c.members
    if m is not None:
        facts.append((label, [badge("ok" if m.kind is ArchiveDifference.NONE else "bad", m.kind),
                              text(f" — {m.summary()}")]))
        listed = m.culprits or tuple(f"{x.name}: {x.what}" for x in (m.metadata or m.order))
        facts += [("", [code(f)]) for f in listed[:MAX_FILES_SHOWN]]
        if len(listed) > MAX_FILES_SHOWN:
            facts.append(("", [text(f"… and {len(listed) - MAX_FILES_SHOWN} more (see diffoscope)")]))
    d = c.diffoscope
    if d is not None:
        line: Line = [badge(tone(str(d.status)), d.status)]
        if d.status is DiffStatus.DIFFERENT and m is None:
            line.append(text(f" — {len(d.files)} differing file(s)"))
        if d.truncated:
            line += [text(" "), badge("warn", "truncated")]
        if d.error:
            line.append(text(f" — {d.error}"))
        links = _links(d)
        if links:
            line += [text(" — "), *links]
        facts.append((f"{label}: diffoscope", line))
        if d.cut:
            facts.append(("", [text("left out (slow, rarely the cause; --full-diffoscope runs them):")]))
            facts += [("", [code(x)]) for x in d.cut]
    return facts


def _built(b: BuiltArtifact | None) -> Line:
    if b is None:
        return [text(None)]
    return [code(b.digest.sha256), text(f" · {b.digest.size:,} bytes · b2sum "), code(short(b.digest.b2sum) + "…"),
            text(f" · {duration(b.duration)} · "), ("a", "log", b.log)]


def _reference(ref: ReferenceSeen | None) -> Line:
    if ref is None:
        return [text(None)]
    return [code(ref.digest.sha256), text(f" · {ref.digest.size:,} bytes · b2sum "),
            code(short(ref.digest.b2sum) + "…"), text(" · from "), code(ref.source)]


def package_facts(p: PackageResult) -> list[tuple[str, Line]]:
    facts: list[tuple[str, Line]] = [
        ("Verdict", [badge(tone(str(p.verdict)), p.verdict), text(" — " + VERDICT_TEXT[p.verdict])]),
        ("File", [code(p.file)]),
    ]
    if p.error:
        facts.append(("Error", [text(p.error)]))
    facts += [("Build 1", _built(p.build1)), ("Build 2", _built(p.build2)), ("Reference", _reference(p.reference))]
    reproducible = yes_no(p.reproducible if p.build1 and p.build2 else None)
    facts.append(("Reproducible", [badge(tone(reproducible), reproducible)]))
    facts.append(("Parity with reference", [badge(tone(yes_no(p.parity)), yes_no(p.parity))]))
    facts += comparison_facts("Build 1 vs build 2", p.build1_vs_build2)
    facts += comparison_facts("Build 1 vs reference", p.build1_vs_reference)
    facts += explanation_facts(p)
    if p.culprits is not None:
        facts += culprit_facts(p.culprits)
    matches = yes_no(p.toolchain.matches_reference)
    facts.append(("Toolchain matches reference", [badge(tone(matches), matches)]))
    facts += [("", [code(change)]) for change in p.toolchain.changed]
    return facts


def _explained(p: PackageResult) -> list[str]:
    """The summary lines of a package's culprits: from evidence first, then from rebuilding."""
    out: list[str] = []
    e, c = p.explanation, p.culprits
    found = list(e.hints) if e is not None else []
    if e is not None and e.variations:
        first = next((f for f in e.findings if f.variations), None)
        out.append(f"{p.label}: culprit ({MARK}): {', '.join(e.variations)}"
                   + (f" — {first.sentence()}" if first else ""))
    if c is not None and c.nondeterministic:
        ev = c.evidence
        first = next((f for f in ev.findings if f.own_time or f.variations), None) if ev is not None else None
        out.append(f"{p.label}: not deterministic by itself: the rebuild with no variation differs from build 1"
                   + (f" — {first.sentence()}" if first else "") + "; no variation is blamed by rebuilding")
        found += list(ev.hints) if ev is not None else []
    if e is not None and e.unexplained:
        out.append(f"{p.label}: unexplained: {some(e.unexplained)}"
                   + ("" if c is not None else " (--find-culprit rebuilds for these)"))
    if e is not None and e.error:
        out.append(f"{p.label}: evidence search failed: {e.error}")
    if c is not None and not c.nondeterministic:
        if c.variations:
            out.append(f"{p.label}: culprit (rebuilt, {c.builds} build(s)): {some(c.variations)}")
        else:
            out.append(f"{p.label}: culprit search: {c.builds} rebuild(s), no further variation named")
    seen = set()
    for h in found:
        if h.cause not in seen:
            seen.add(h.cause)
            out.append(f"{p.label}: hint ({h.cause}): {h.hint}")
    return out


def explanation_facts(p: PackageResult) -> list[tuple[str, Line]]:
    e = p.explanation
    if e is None:
        return []
    head: Line = [bold(", ".join(e.variations) or "no variation"), text(" "), badge("warn", MARK)]
    if e.own_time:
        head.append(text(" · the build's own time is in the bytes"))
    facts: list[tuple[str, Line]] = [("Culprits from evidence", head)]
    facts += [("", [text(f.sentence())]) for f in e.findings[:MAX_FILES_SHOWN]]
    if e.unexplained:
        facts.append(("Unexplained", [text("no variation's value shows where these differ (")]
                      + [text("--find-culprit rebuilds for them)")]))
        facts += [("", [code(m)]) for m in e.unexplained[:MAX_FILES_SHOWN]]
    partly = [m for m in e.members if m.unmatched and m.state is MemberState.EXPLAINED]
    for m in partly[:MAX_FILES_SHOWN]:
        facts.append(("", [code(m.member), text(f": {m.unmatched} more differing line(s) or string(s) no form "
                                                "matched (compressed data, digests)")]))
    for h in e.hints:
        facts.append((f"Hint: {h.cause}", [bold(h.hint)]))
        facts.append(("", [text("evidence: " + h.evidence)]))
    if e.error:
        facts.append(("Evidence search", [text(f"failed: {e.error}")]))
    return facts


def culprit_facts(c: Culprits) -> list[tuple[str, Line]]:
    if c.nondeterministic:
        line: Line = [badge("bad", "not deterministic by itself"),
                      text(" — the rebuild with no variation already differs from build 1: no variation is blamed")]
    else:
        line = [bold(", ".join(c.variations) if c.variations else "none by rebuilding")]
        if c.from_evidence:
            line.append(text(f" · named from evidence, not rebuilt: {', '.join(c.from_evidence)}"))
    line.append(text(f" · {c.builds} rebuild(s)"))
    facts: list[tuple[str, Line]] = [("Culprits rebuilt", line)]
    if c.tested:
        facts.append(("", [text("rebuilt varying " + "; ".join(
            f"{'nothing (the null hypothesis)' if k == 'none' else k}: {v}" for k, v in c.tested))]))
    if c.evidence is not None:
        facts.append(("", [text("build 1 against the rebuild with no variation: " + c.evidence.summary())]))
        facts += [("", [text(f.sentence())]) for f in c.evidence.findings[:MAX_FILES_SHOWN]]
    return facts


def problems(r: Report) -> list[str]:
    """One plain line per thing a reader must look at."""
    out = []
    for p in r.packages:
        verdict = str(p.verdict)
        if verdict == "build-failed":
            out.append(f"{p.label}: build failed: {p.error}")
        elif verdict == "not-reproducible":
            m = p.build1_vs_build2.members if p.build1_vs_build2 else None
            out.append(f"{p.label}: not reproducible" + (f": {m.summary()}" if m else ""))
            out += _explained(p)
        elif verdict == "parity-failed":
            m = p.build1_vs_reference.members if p.build1_vs_reference else None
            hashes = (f"reference sha256 {p.reference.digest.sha256 if p.reference else 'unknown'}, "
                      f"build 1 sha256 {p.build1.digest.sha256 if p.build1 else 'unknown'}")
            out.append(f"{p.label}: differs from the reference ({hashes})"
                       + (f": {m.summary()}" if m and m.kind is not ArchiveDifference.NONE else ""))
        elif verdict == "no-reference":
            out.append(f"{p.label}: no reference to check parity against")
        if p.toolchain.changed and verdict != "accepted":
            out.append(f"{p.label}: toolchain changed: {some(p.toolchain.changed, 3)}")
        for label, c in (("build 1 vs build 2", p.build1_vs_build2), ("build 1 vs reference", p.build1_vs_reference)):
            if c is not None and c.diffoscope is not None and c.diffoscope.status is DiffStatus.ERROR:
                out.append(f"{p.label}: diffoscope {label}: {c.diffoscope.error}")
            if c is not None and c.diffoscope is not None and c.diffoscope.cut:
                out.append(f"{p.label}: diffoscope {label} left out {some(c.diffoscope.cut, 3)} "
                           "(--full-diffoscope runs them)")
    out += [f"note: {n}" for n in r.notes]
    return out
