"""Culprit finding by rebuilding (``--find-culprit``), after the evidence search had its say.

1. The null hypothesis first: build 1's own conditions once more, on the experiment's engine.  When
   that already differs from build 1, the build is not deterministic by itself: no variation is
   blamed, and the evidence search says what moved (usually the build's own time in the bytes).
2. What the evidence search explained is not rebuilt (unless ``--confirm-culprits``): only the
   variations it did not name are searched, and only when some difference is still unexplained.
3. The search splits the candidates in halves, following a half that still differs, so one culprit
   among ten costs about four builds instead of ten; after each culprit found, the rest is rebuilt
   once more to see whether another one is left.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from kabuild.build import variations
from kabuild.build.images import ImageInfo
from kabuild.build.spec import BuildSpec, Context
from kabuild.compare import evidence, forms, hints, members
from kabuild.compare.acceptance import Culprits, PackageResult
from kabuild.reproduce.explain import Sides
from kabuild.reproduce.pair import Pair, build_on

Progress = Callable[[str], None]
Variation = variations.Variation


@dataclasses.dataclass
class _Search:
    """Rebuilds of one package's experiment with a chosen set of variations, compared with build 1."""

    pair: Pair
    image2: ImageInfo
    base: BuildSpec
    ctx: Context
    wanted: dict[str, str]  # file -> build 1's sha256
    run_dir: Path
    progress: Progress
    final_dir: Path | None = None  # where run_dir will be once the run is done (the logs' paths)
    tested: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    builds: int = 0
    failed: bool = False

    def rebuild(self, varied: frozenset[Variation]):
        label = "+".join(variations.ordered(varied)) or "none"
        spec = dataclasses.replace(variations.apply(self.base, varied, vary=True), node_cpus=self.pair.second.engine.cpus)
        what = f"varying only {', '.join(variations.ordered(varied))}" if varied else \
            "with no variation (the null hypothesis: is the build deterministic by itself?)"
        self.progress(f"culprit search: rebuilding {self.ctx.package.name} {what}")
        t0 = time.time()
        where = Path("culprits") / label.replace("+", "_")
        result, err = build_on(self.pair.second.engine, self.image2, spec, self.ctx, self.run_dir / where,
                               f"culprit-{label}", self.progress, (self.final_dir or self.run_dir) / where)
        self.builds += 1
        if err is not None or result is None:
            self.tested.append((label, "build-failed"))
            self.failed = True
            return None, spec, (t0, time.time())
        got = {a.name: a for a in result.artifacts}
        differs = any(got.get(f) is None or got[f].digest.sha256 != sha for f, sha in self.wanted.items())
        self.tested.append((label, "differs" if differs else "same"))
        return (got, differs), spec, (t0, time.time())

    def differs(self, varied: frozenset[Variation]) -> bool | None:
        done, _spec, _window = self.rebuild(varied)
        return None if done is None else done[1]

    def bisect(self, known: frozenset[Variation]) -> Variation | None:
        """One culprit in ``known``, a set whose rebuild differs: follow the half that differs."""
        ordered = [v for v in variations.ORDER if v in known]
        while len(ordered) > 1:
            half = frozenset(ordered[: len(ordered) // 2])
            d = self.differs(half)
            if d is None:
                return None
            # when the first half is the same, the other half holds the difference (no rebuild needed)
            ordered = [v for v in ordered if (v in half) == d]
        return ordered[0] if ordered else None


def find_culprits(pair: Pair, image2, base, selected: frozenset[Variation], ctx, results: list[PackageResult],
                  run_dir: Path, progress: Progress, sides: Sides, confirm: bool = False,
                  final_dir: Path | None = None) -> list[PackageResult]:
    """Name the variations that change the bytes by rebuilding, after the null hypothesis."""
    wanted = {r.file: r.build1.digest.sha256 for r in results if not r.reproducible and r.build1 and r.build2 and r.file}
    if not wanted:
        return results
    search = _Search(pair, image2, base, ctx, wanted, run_dir, progress, final_dir)
    mine = [r for r in results if r.file in wanted]
    from_evidence = frozenset(Variation(v) for r in mine if r.explanation for v in r.explanation.variations)
    open_files = [str(r.file) for r in mine if r.explanation is None or r.explanation.error or r.explanation.unexplained]

    done, spec0, window0 = search.rebuild(frozenset())
    if done is not None and done[1]:
        progress(f"culprit search: {ctx.package.name} differs from build 1 with no variation: it is not "
                 "deterministic by itself, and no variation is blamed")
        return _null_differs(results, wanted, done[0], search, run_dir, sides, spec0, window0, progress)

    culprits: list[Variation] = []
    if done is not None and (confirm or open_files):
        candidates = frozenset(selected) if confirm else frozenset(selected) - from_evidence
        if confirm:
            culprits = [v for v in variations.ORDER if v in candidates and search.differs(frozenset({v}))]
        else:
            progress(f"culprit search: {', '.join(open_files)}: differences no variation's value explains; "
                     f"searching {', '.join(variations.ordered(candidates)) or 'nothing'}"
                     + (f" (named from evidence, not rebuilt: {', '.join(variations.ordered(from_evidence))})"
                        if from_evidence else ""))
            culprits = _peel(search, candidates, known=not from_evidence and candidates == frozenset(selected))
    elif done is not None:
        progress(f"culprit search: {ctx.package.name}: every difference is explained from evidence; nothing more "
                 "to rebuild (--confirm-culprits rebuilds each variation)")
    named = tuple(v.value for v in variations.ORDER if v in set(culprits))
    c = Culprits(named, tuple(search.tested), False, search.builds,
                 () if confirm else tuple(variations.ordered(from_evidence)))
    return [dataclasses.replace(r, culprits=c) if r.file in wanted else r for r in results]


def _peel(search: _Search, candidates: frozenset[Variation], known: bool) -> list[Variation]:
    """Culprits among ``candidates``, one bisection at a time.  ``known``: their rebuild is build 2
    itself (nothing was named from evidence), so it is known to differ without a rebuild."""
    found: list[Variation] = []
    rest = candidates
    differs: bool | None = True if known else (search.differs(rest) if rest else False)
    while rest and differs:
        v = search.bisect(rest)
        if v is None:
            break
        found.append(v)
        rest = rest - {v}
        differs = search.differs(rest) if rest else False
    return found


def _null_differs(results, wanted, got, search: _Search, run_dir: Path, sides: Sides, spec0, window0,
                  progress: Progress) -> list[PackageResult]:
    """The rebuild with no variation differs: explain build 1 against it (no variation can be named)."""
    out = []
    for r in results:
        if r.file in wanted and r.build1 is not None and r.file in got:
            null_path = got[r.file].path
            found = members.compare_packages(run_dir / r.build1.path, null_path)
            cond = forms.conditions(sides.spec1, spec0, frozenset(), sides.window1, window0)
            ev = hints.with_hints(evidence.explain(run_dir / r.build1.path, null_path, found, cond))
            progress(f"culprit search: {r.file}: build 1 against the rebuild with no variation: {ev.summary()}")
            r = dataclasses.replace(r, culprits=Culprits((), tuple(search.tested), True, search.builds, (), ev))
        elif r.file in wanted:
            r = dataclasses.replace(r, culprits=Culprits((), tuple(search.tested), True, search.builds))
        out.append(r)
    return out
