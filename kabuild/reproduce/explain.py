"""Build 1 against build 2 of one package, explained from the bytes (kabuild.compare.evidence) with
the known causes' hints (kabuild.compare.hints): no rebuild."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from kabuild.build.spec import BuildSpec
from kabuild.compare import evidence, forms, hints
from kabuild.compare.acceptance import PackageResult
from kabuild.compare.explanation import MARK, Explanation

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Sides:
    """Two builds as the evidence search needs them: their specs and when each ran."""

    spec1: BuildSpec
    spec2: BuildSpec
    window1: tuple[float, float]
    window2: tuple[float, float]


def explain_pair(first: Path, second: Path, result: PackageResult, sides: Sides, selected,
                 what: str, progress: Progress) -> Explanation | None:
    """The explanation of one package's two builds; None when they are the same."""
    c = result.build1_vs_build2
    if c is None or c.members is None or result.reproducible:
        return None
    cond = forms.conditions(sides.spec1, sides.spec2, selected, sides.window1, sides.window2)
    found = hints.with_hints(evidence.explain(first, second, c.members, cond))
    progress(f"{what}: {found.summary()}" + (f" [{found.seconds:.1f} s]" if found.seconds >= 1 else ""))
    for h in found.hints:
        progress(f"{what}: hint ({h.cause}): {h.hint}")
    return found


def explain_results(results: list[PackageResult], run_dir: Path, sides: Sides, selected,
                    progress: Progress) -> list[PackageResult]:
    out = []
    for r in results:
        if r.build1 is not None and r.build2 is not None and not r.reproducible:
            found = explain_pair(run_dir / r.build1.path, run_dir / r.build2.path, r, sides, selected,
                                 f"{r.file}", progress)
            r = dataclasses.replace(r, explanation=found)
        out.append(r)
    return out


__all__ = ["MARK", "Sides", "explain_pair", "explain_results"]
