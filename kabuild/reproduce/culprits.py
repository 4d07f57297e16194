"""Culprit finding by rebuilding: the experiment again with one variation at a time."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from kabuild.build import variations
from kabuild.compare.acceptance import (
    Culprits,
    PackageResult,
)
from kabuild.reproduce.pair import Pair, build_on

Progress = Callable[[str], None]


def find_culprits(pair: Pair, image2, base, selected, ctx, results: list[PackageResult], run_dir: Path,
                   progress: Progress, final_dir: Path | None = None) -> list[PackageResult]:
    """Rerun the experiment with one variation at a time; name those that change the bytes."""
    wanted = {r.file: r.build1.digest.sha256 for r in results if not r.reproducible and r.build1 and r.file}
    if not wanted:
        return results
    tested: dict[str, dict[str, str]] = {f: {} for f in wanted}
    for v in variations.ORDER:
        if v not in selected:
            continue
        spec = dataclasses.replace(variations.apply(base, frozenset({v}), vary=True),
                                   node_cpus=pair.second.engine.cpus)
        label = f"culprit-{v}"
        progress(f"culprit search: rebuilding {ctx.package.name} with only '{v}' varied")
        result, err = build_on(pair.second.engine, image2, spec, ctx, run_dir / "culprits" / v.value, label, progress,
                               (final_dir or run_dir) / "culprits" / v.value)
        got = {a.name: a.digest.sha256 for a in result.artifacts} if result else {}
        for f, sha in wanted.items():
            tested[f][v.value] = "build-failed" if err else ("same" if got.get(f) == sha else "differs")
    return [dataclasses.replace(r, culprits=Culprits(tuple(k for k, s in tested[r.file].items() if s == "differs"),
                                                    tuple(tested[r.file].items())))
            if r.file in tested else r for r in results]
