"""Comparing two package files (members first, then diffoscope on what differs), and parity of a
build with its recorded reference."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kabuild.build.images import ImageInfo
from kabuild.compare import diffoscope, members, references
from kabuild.compare.acceptance import (
    PackageResult,
    ReferenceSeen,
    ToolchainCheck,
    Verdict,
    verdict_of,
)
from kabuild.compare.budget import Job, Queue
from kabuild.compare.differences import ArchiveDifference, Comparison, DiffResult
from kabuild.config.manifest import Manifest
from kabuild.files import digest_file

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DiffoscopeOptions:
    whole: bool = False  # diffoscope over the whole packages, not only the differing members
    timeout: int = 600  # one diffoscope run on its own (without a queue)
    full: bool = False  # run diffoscope's slow commands too (disassembly, debug-info dumps)
    budget: float | None = None  # seconds for all of a run's diffoscopes; None: from the builds' time


def compare_pair(first: Path, second: Path, out: Path, run_dir: Path, opts: DiffoscopeOptions, progress: Progress,
                 what: str, queue: Queue | None = None, key: tuple[str, str] | None = None) -> Comparison:
    """Members first (seconds, names the culprits), then diffoscope on only those members: at once,
    or, given a ``queue``, later with the run's other diffoscopes (the result then has none yet)."""
    progress(f"{what}: hashing every member of both packages")
    found = members.compare_packages(first, second)
    progress(f"{what}: {found.summary()}")
    names: tuple[str, ...] | None
    if opts.whole or found.kind is ArchiveDifference.UNKNOWN:
        names = None
    elif found.culprits:
        names = found.culprits
    else:
        return Comparison(found, None)
    if queue is not None and key is not None:
        queue.add(Job(key, first, second, names, out, what))
        return Comparison(found, None)
    if names is None:
        progress(f"{what}: running diffoscope on the whole packages")
        diff = diffoscope.diffoscope(first, second, out / "packages", timeout=opts.timeout, full=opts.full)
    else:
        progress(f"{what}: running diffoscope on the {len(names)} differing member(s)")
        diff = diffoscope.diffoscope_members(first, second, names, out / "members", timeout=opts.timeout,
                                             full=opts.full)
    return Comparison(found, diff.relative_to(run_dir))


def check_reference(root: Path, result: PackageResult, ref, path: Path, image: ImageInfo, run_dir: Path,
                    opts: DiffoscopeOptions, progress: Progress, queue: Queue | None = None) -> PackageResult:
    """Parity of build 1 with its recorded reference, the toolchain difference, and the verdict."""
    result = dataclasses.replace(result, reference=None, parity=None, build1_vs_reference=None,
                                 toolchain=ToolchainCheck())
    if ref is not None:
        parity = ref.digest == digest_file(path)
        changes = references.toolchain_changes(ref.toolchain, image.packages)
        result = dataclasses.replace(
            result, reference=ReferenceSeen(ref.digest, ref.source(root)), parity=parity,
            toolchain=ToolchainCheck(not changes and ref.image.recipe_hash == image.recipe_hash, tuple(changes),
                                     ref.image.tag))
        ref_file = references.artifact_path(ref) if not parity else None
        if ref_file is not None:
            comparison = compare_pair(ref_file, path, run_dir / "diffoscope" / str(result.file) / "reference-vs-build1",
                                      run_dir, opts, progress, f"{result.file} reference vs build 1", queue,
                                      (str(result.file), "build1_vs_reference"))
            result = dataclasses.replace(result, build1_vs_reference=comparison)
    return dataclasses.replace(result, verdict=verdict_of(result))


def attach(results: list[PackageResult], done: dict[tuple[str, str], DiffResult], run_dir: Path) -> list[PackageResult]:
    """The queued diffoscopes' results put into the package results they belong to."""
    out = []
    for r in results:
        for attr in ("build1_vs_build2", "build1_vs_reference"):
            diff = done.get((str(r.file), attr))
            c = getattr(r, attr)
            if diff is not None and c is not None:
                r = dataclasses.replace(r, **{attr: dataclasses.replace(c, diffoscope=diff.relative_to(run_dir))})
        out.append(r)
    return out


def reference_notes(manifest: Manifest, results: list[PackageResult]) -> list[str]:
    return [f"{r.file}: no recorded reference, parity not checked (`kabuild reference record {manifest.host}`)"
            for r in results if r.verdict is Verdict.NO_REFERENCE]
