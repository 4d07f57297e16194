"""What makes two reproduce runs the same, and answering from an earlier run with the same inputs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kabuild.build import variations
from kabuild.build.images import ImageInfo
from kabuild.compare import acceptance, references
from kabuild.compare.acceptance import (
    Report,
)
from kabuild.compare.parity import check_reference, reference_notes
from kabuild.config.manifest import Kernel, Manifest
from kabuild.errors import KabuildError
from kabuild.files import atomic_symlink
from kabuild.report import render as report_mod
from kabuild.report.runs import new_run_id
from kabuild.reproduce.options import Options
from kabuild.timestamps import utc_now

Progress = Callable[[str], None]


def inputs_key(lock_hash: str, recipe_hash: str, opts: Options, kernel: Kernel | None = None,
               recipes: Mapping[str, str] | None = None, *, engines: tuple[str, ...] = (),
               images: tuple[str, ...] = ()) -> str:
    """What makes two runs the same: the lock, the image, the variations, the CPU counts, every
    package's recipe (its PKGBUILD directory's digest) and, for a kernel, the configuration built
    (the manifest's or its test configuration); and what really built it: the engines of build 1 and
    build 2 (a run that fell back is not the manifest's run) and the image IDs used (base and
    dependency layers: the toolchain)."""
    fields: dict[str, Any] = {"lock": lock_hash, "image": recipe_hash, "variations": variations.ordered(opts.variations),
                              "experiment_cpus": opts.experiment_cpus}
    if kernel is not None:
        fields["kernel"] = {"config": kernel.config, "fragments": list(kernel.fragments)}
        if kernel.dtbs:  # only when narrowed, so the keys of earlier runs without device trees stay valid
            fields["kernel"]["dtbs"] = list(kernel.dtbs)
    if recipes is not None:
        fields["recipes"] = dict(sorted(recipes.items()))
    if engines:
        fields["engines"] = list(engines)
    if images:
        fields["image_ids"] = list(images)
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def earlier_run(runs: Path, key: str) -> tuple[Report, Path] | None:
    if not runs.is_dir():
        return None
    for d in sorted((p for p in runs.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")),
                    reverse=True):
        try:
            old = acceptance.load(d / acceptance.FILENAME)
        except KabuildError:
            continue  # an unreadable or older-schema run is simply not reused
        if old.inputs_key == key and old.completed and all(p.build2 for p in old.packages) and all(
                (d / b.path).is_file() for p in old.packages for b in (p.build1, p.build2) if b is not None):
            return old, d  # only a run whose packages are all still there can answer
    return None


def answer_from(root: Path, manifest: Manifest, earlier: tuple[Report, Path], runs: Path, opts: Options,
                 progress: Progress) -> tuple[Report, Path]:
    """Same lock, image and variations as a completed run: reuse its builds, re-check references."""
    old, old_dir = earlier
    progress(f"inputs (lock, recipes, image IDs, engines, variations) match completed run {old.run_id}: answering from its "
             "builds without building (--rebuild builds again)")
    # every reference is read before anything is written: a damaged one leaves no half-made run behind
    refs = {p.name: references.load(root, manifest.host, p.name) for p in old.packages
            if p.build1 is not None and p.file is not None}
    run_id = new_run_id()
    partial = runs / f".{run_id}.partial"
    run_dir = runs / run_id
    shutil.copytree(old_dir, partial, copy_function=os.link, ignore=shutil.ignore_patterns("report.*"))
    try:
        image = ImageInfo(old.image.tag, old.image.id, old.image.recipe_hash, old.image.flavor, old.image.arch,
                          old.toolchain)
        results = []
        for p in old.packages:
            if p.build1 is not None and p.file is not None:
                use = old.image_use(p.image_id)
                used = image if use is None else ImageInfo(use.image.tag, use.image.id, use.image.recipe_hash,
                                                           use.image.flavor, use.image.arch, use.packages)
                p = check_reference(root, p, refs[p.name].get(p.file), partial / p.build1.path, used, partial,
                                    opts.diffoscope, progress)
            results.append(p)
        notes = [n for n in old.notes if "no recorded reference" not in n]
        notes += [f"answered from run {old.run_id} without building (same lock, recipes, image IDs, engines and "
                  "variations)"]
        notes += reference_notes(manifest, results)
        now = utc_now()
        report = dataclasses.replace(old, run_id=run_id, answered_from=old.run_id, started_at=now, finished_at=now,
                                     duration=0.0, packages=tuple(results), notes=tuple(notes), timings=())
        report_mod.write(partial, report)
        os.replace(partial, run_dir)
    finally:
        if partial.exists() and not run_dir.exists():
            shutil.rmtree(partial, ignore_errors=True)  # hard links only: the earlier run keeps its files
    atomic_symlink(run_dir.name, runs / "latest")
    return report, run_dir
