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
from kabuild.compare.differences import ArchiveDifference, Comparison
from kabuild.config.manifest import Manifest
from kabuild.files import digest_file

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DiffoscopeOptions:
    whole: bool = False  # diffoscope over the whole packages, not only the differing members
    timeout: int = 600


def compare_pair(first: Path, second: Path, out: Path, run_dir: Path, opts: DiffoscopeOptions, progress: Progress,
                 what: str) -> Comparison:
    """Members first (seconds, names the culprits), then diffoscope on only those members."""
    progress(f"{what}: hashing every member of both packages")
    found = members.compare_packages(first, second)
    progress(f"{what}: {found.summary()}")
    diff = None
    if opts.whole or found.kind is ArchiveDifference.UNKNOWN:
        progress(f"{what}: running diffoscope on the whole packages")
        diff = diffoscope.diffoscope(first, second, out / "packages", timeout=opts.timeout)
    elif found.culprits:
        progress(f"{what}: running diffoscope on the {len(found.culprits)} differing member(s)")
        diff = diffoscope.diffoscope_members(first, second, found.culprits, out / "members",
                                          timeout=opts.timeout)
    return Comparison(found, diff.relative_to(run_dir) if diff is not None else None)


def check_reference(root: Path, result: PackageResult, ref, path: Path, image: ImageInfo, run_dir: Path,
                    opts: DiffoscopeOptions, progress: Progress) -> PackageResult:
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
                                      run_dir, opts, progress, f"{result.file} reference vs build 1")
            result = dataclasses.replace(result, build1_vs_reference=comparison)
    return dataclasses.replace(result, verdict=verdict_of(result))


def reference_notes(manifest: Manifest, results: list[PackageResult]) -> list[str]:
    return [f"{r.file}: no recorded reference, parity not checked (`kabuild reference record {manifest.host}`)"
            for r in results if r.verdict is Verdict.NO_REFERENCE]
