"""The two-node reproduce run (after Debian's remote-build design).

The main node (where kabuild runs) verifies the lock and every source, stages the
contexts and decides the two build specs.  Build 1 (control) runs on the first node
with every CPU it has, build 2 (experiment, with variations) on the second, from the
same image and the same SOURCE_DATE_EPOCH, at the same time when the nodes differ.
The packages come back to the main node and are compared by hash; when they differ,
every member of both archives is hashed to name the members that differ, and
diffoscope explains only those.  Each package is checked against its recorded
reference, and the acceptance report (:mod:`kabuild.compare.acceptance`) is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor
from pathlib import Path

from kabuild import __version__
from kabuild.build import host as build_mod
from kabuild.build import variations
from kabuild.build.containers import owner, owner_alive
from kabuild.build.images import ImageInfo
from kabuild.build.spec import Artifact, BuildResult, BuildSpec
from kabuild.compare import diffoscope, references
from kabuild.compare.acceptance import (
    BuildConditions,
    BuiltArtifact,
    PackageResult,
    Report,
    Verdict,
)
from kabuild.compare.budget import Queue, default_budget
from kabuild.compare.parity import attach, check_reference, compare_pair, reference_notes
from kabuild.config.manifest import Manifest
from kabuild.config.nodes import Nodes
from kabuild.errors import KabuildError
from kabuild.files import atomic_symlink
from kabuild.inputs import recipes
from kabuild.inputs.lock import with_build
from kabuild.inputs.records import ReproducedBy
from kabuild.process import wait_futures
from kabuild.report import render as report_mod
from kabuild.report.runs import new_run_id, runs_dir
from kabuild.reproduce.culprits import find_culprits
from kabuild.reproduce.explain import Sides, explain_results
from kabuild.reproduce.identity import answer_from, earlier_run, inputs_key
from kabuild.reproduce.options import Options
from kabuild.reproduce.pair import (
    Images,
    Pair,
    build_mode,
    build_on,
    connect_pair,
    node_use,
    ready_images,
    remove_run_containers,
    same_image,
)
from kabuild.reproduce.timing import Timings
from kabuild.timestamps import utc_now

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- nodes


# --------------------------------------------------------------------------- building


def _both(pair: Pair, image1, image2, spec1, spec2, ctx, run_dir: Path, final_dir: Path, progress: Progress):
    """Both builds into ``run_dir`` (the run's .partial directory); messages name ``final_dir``, where
    the logs are once the run is complete."""
    if pair.same_engine:
        r1 = build_on(pair.first.engine, image1, spec1, ctx, run_dir / "build1", "build1", progress,
                      final_dir / "build1")
        r2 = build_on(pair.second.engine, image2, spec2, ctx, run_dir / "build2", "build2", progress,
                      final_dir / "build2")
        return r1, r2
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        f1 = pool.submit(build_on, pair.first.engine, image1, spec1, ctx, run_dir / "build1", "build1", progress,
                         final_dir / "build1")
        f2 = pool.submit(build_on, pair.second.engine, image2, spec2, ctx, run_dir / "build2", "build2", progress,
                         final_dir / "build2")
        done, _ = wait_futures((f1, f2), return_when=FIRST_EXCEPTION)
        lost = next((f.exception() for f in done if f.exception() is not None), None)
        if lost is not None:
            # A node was lost (or its engine failed): end the other build now instead of after it
            # finishes; removing the run's containers ends both, and the error is reported once.
            remove_run_containers(pair, spec1.run_id)
            wait_futures((f1, f2))
            raise lost
        return f1.result(), f2.result()
    except KeyboardInterrupt:
        # Remove both containers now: that ends the builds, so the threads can finish.
        remove_run_containers(pair, spec1.run_id)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _specs(base: BuildSpec, pair: Pair, opts: Options, image2: ImageInfo):
    """Build 1 with every CPU of its node; build 2 varied, with its own node's CPU count."""
    control_cpus = pair.first.engine.cpus
    exp_cpus = variations.experiment_cpus(control_cpus, pair.second.engine.cpus, opts.experiment_cpus)
    base = dataclasses.replace(base, cpus=control_cpus, node_cpus=control_cpus, vary_cpus=exp_cpus)
    spec1 = variations.apply(base, opts.variations, vary=False)
    spec2 = variations.apply(base, opts.variations, vary=True)
    spec2 = dataclasses.replace(spec2, image=image2.tag, node_cpus=pair.second.engine.cpus)
    if variations.Variation.CPUS not in opts.variations:
        spec2 = dataclasses.replace(spec2, cpus=min(spec2.cpus, spec2.node_cpus))
    return base, spec1, spec2


# --------------------------------------------------------------------------- comparing


def _artifact(a: Artifact, run_dir: Path, result: BuildResult) -> BuiltArtifact:
    return BuiltArtifact(a.digest, a.path.relative_to(run_dir).as_posix(), round(result.duration, 1),
                         result.log.relative_to(run_dir).as_posix())


def _package_result(root: Path, refs: dict, name: str, r1, r2, run_dir: Path, image: ImageInfo,
                    opts: Options, progress: Progress, queue: Queue, timings: Timings) -> list[PackageResult]:
    out = []
    b2 = {a.name: a for a in r2.artifacts}
    for a1 in r1.artifacts:
        a2 = b2.get(a1.name)
        error = None if a2 else f"build 2 produced no {a1.name} (it made: {', '.join(sorted(b2)) or 'nothing'})"
        same = bool(a2 and diffoscope.same(a1.digest, a2.digest))
        pair = None
        if a2 is not None and not same:
            with timings.phase("member hashing"):
                pair = compare_pair(a1.path, a2.path, run_dir / "diffoscope" / a1.name / "build1-vs-build2",
                                    run_dir, opts.diffoscope, progress, f"{a1.name} build 1 vs build 2", queue,
                                    (a1.name, "build1_vs_build2"))
        result = PackageResult(name=name, file=a1.name, build1=_artifact(a1, run_dir, r1),
                               build2=_artifact(a2, run_dir, r2) if a2 else None, reproducible=same,
                               verdict=Verdict.BUILD_FAILED, build1_vs_build2=pair, error=error)
        with timings.phase("references"):
            out.append(check_reference(root, result, refs.get(a1.name), a1.path, image, run_dir, opts.diffoscope,
                                       progress, queue))
    return out


def _failed(name: str, r1, r2, e1, e2, run_dir: Path) -> PackageResult:
    def side(r):
        return _artifact(r.artifacts[0], run_dir, r) if r is not None else None
    done = r1 or r2
    return PackageResult(name=name, file=done.artifacts[0].name if done else None, build1=side(r1), build2=side(r2),
                         reproducible=False, verdict=Verdict.BUILD_FAILED,
                         error="; ".join(str(e) for e in (e1, e2) if e))


# --------------------------------------------------------------------------- the run


def reproduce(root: Path, manifest: Manifest, nodes: Nodes, opts: Options, progress: Progress) -> tuple[Report, Path]:
    prepared = build_mod.prepare(root, manifest, progress)
    lock = prepared.lock
    recipe_digests = recipes.digests(lock.promoted.recipes)  # the lock is fresh: these are the files on disk
    runs = runs_dir(root, manifest)
    # references are evidence: a damaged one is refused now (exit 3), before anything is built
    refs = {p.name: references.load(root, manifest.host, p.name) for p in manifest.packages}
    runs.mkdir(parents=True, exist_ok=True)
    clean_unfinished(runs, progress)
    pair = connect_pair(manifest, nodes, progress)
    timings = Timings()
    try:
        with timings.phase("image and dependency layer"):
            ready = ready_images(root, pair, prepared, progress)
        # what built it is part of a run's identity: a run that fell back never answers for the
        # manifest's nodes, and a new image (toolchain) builds again
        key = inputs_key(lock.promotion_hash, prepared.recipe.hash, opts, manifest.kernel, recipe_digests,
                         engines=tuple(e.name for e in (pair.first.engine, pair.second.engine)), images=ready.ids)
        if not opts.rebuild and not opts.find_culprit:
            earlier = earlier_run(runs, key)
            if earlier is not None:
                return answer_from(root, manifest, earlier, runs, opts, progress)
        return _run(root, manifest, prepared, refs, pair, ready, key, runs, opts, progress, timings)
    finally:
        pair.close()


def _run(root: Path, manifest: Manifest, prepared: build_mod.Prepared, refs: dict, pair: Pair, ready: Images,
         key: str, runs: Path, opts: Options, progress: Progress, timings: Timings) -> tuple[Report, Path]:
    lock = prepared.lock
    run_id = new_run_id()
    partial = runs / f".{run_id}.partial"
    run_dir = runs / run_id
    partial.mkdir()
    (partial / OWNER_FILE).write_text(owner() + "\n")
    started, t0 = utc_now(), time.monotonic()
    image1 = ready.base
    queue = Queue(full=opts.full_diffoscope)
    try:
        results: list[PackageResult] = []
        controls = []  # build 1 of every package: what the lock's build: block records
        spec1 = spec2 = None
        slowest = 0.0
        for ctx, pkg_image in zip(prepared.contexts, ready.packages, strict=True):
            same_image(ctx, pkg_image, pair)
            base = dataclasses.replace(build_mod.base_spec(manifest, ctx.package, pkg_image), run_id=run_id)
            base, spec1, spec2 = _specs(base, pair, opts, pkg_image)
            progress(f"{ctx.package.name}: build 1 on {pair.first.engine.name} ({spec1.cpus} CPU), build 2 on "
                     f"{pair.second.engine.name} ({spec2.cpus} CPU), varying "
                     f"{', '.join(variations.ordered(opts.variations)) or 'nothing'}")
            began = time.time()  # the wall clock the builds read: dates in their bytes are placed against it
            with timings.phase("builds (wall clock)"):
                (r1, e1), (r2, e2) = _both(pair, pkg_image, pkg_image, spec1, spec2, ctx, partial, run_dir, progress)
            window = (began, time.time())
            for label, r in (("build 1", r1), ("build 2", r2)):
                if r is not None:
                    timings.add(f"{label} {ctx.package.name}", r.duration)
            if e1 or e2:
                results.append(dataclasses.replace(_failed(ctx.package.name, r1, r2, e1, e2, partial),
                                                   image_id=pkg_image.id))
                continue
            controls.append(r1)
            slowest = max(slowest, r1.duration)  # "one build": the control, with every CPU of its node
            found = _package_result(root, refs[ctx.package.name], ctx.package.name, r1, r2, partial, pkg_image,
                                    opts, progress, queue, timings)
            sides = Sides(spec1, spec2, window, window)
            with timings.phase("evidence"):
                found = explain_results(found, partial, sides, opts.variations, progress)
            if opts.find_culprit:
                with timings.phase("culprit rebuilds"):
                    found = find_culprits(pair, pkg_image, dataclasses.replace(base, image=pkg_image.tag),
                                          opts.variations, ctx, found, partial, progress, sides,
                                          opts.confirm_culprits, run_dir)
            results.extend(dataclasses.replace(p, image_id=pkg_image.id) for p in found)
        with timings.phase("diffoscope"):
            spent = dict(timings.items())
            budget = opts.diffoscope_budget if opts.diffoscope_budget is not None else default_budget(
                slowest, spent.get("member hashing", 0.0) + spent.get("evidence", 0.0))
            results = attach(results, queue.run(budget, os.cpu_count() or 1, progress), partial)
        t_reports = time.monotonic()
        report = _report(manifest, prepared, run_id, key, started, time.monotonic() - t0, image1, pair, opts,
                         spec1, spec2, results, ready, timings.items())
        report_mod.render_all(report, partial)  # the reports' own cost, measured on a first rendering
        timings.add("reports", time.monotonic() - t_reports)
        report = dataclasses.replace(report, timings=timings.items())
        (partial / OWNER_FILE).unlink()
        report_mod.write(partial, report)
        os.replace(partial, run_dir)
        atomic_symlink(run_dir.name, runs / "latest")
        if controls:
            with_build(lock, build_mod.build_block(controls, pair.first, image1, started,
                                                   ReproducedBy(run_id, str(report.verdict))))
    except KeyboardInterrupt:
        remove_run_containers(pair, run_id)
        raise
    except KabuildError as e:
        remove_run_containers(pair, run_id)
        kept = _keep_unfinished(partial, runs, run_id)
        if kept is not None:
            e.message += f" (the unfinished run's logs are in {kept} until the next run)"
        raise
    finally:
        _keep_unfinished(partial, runs, run_id)
    return report, run_dir


OWNER_FILE = ".kabuild-owner"  # in a .partial run directory: the kabuild process that is making it


def _keep_unfinished(partial: Path, runs: Path, run_id: str) -> Path | None:
    """What a failed run made (logs!) stays under a name that says it did not finish; the next run
    removes it (:func:`clean_unfinished`)."""
    if not partial.exists():
        return None
    target = runs / f"{run_id}.incomplete"
    with contextlib.suppress(OSError):
        os.replace(partial, target)
        return target
    return None


def clean_unfinished(runs: Path, progress: Progress) -> None:
    """Remove the runs earlier kabuild runs did not finish: ``*.incomplete`` (kept for their logs
    until now) and ``.*.partial`` whose kabuild process is gone (killed)."""
    gone = []
    for d in sorted(runs.iterdir()) if runs.is_dir() else []:
        if not d.is_dir() or d.is_symlink():
            continue
        if d.name.endswith(".incomplete"):
            gone.append(d)
        elif d.name.startswith(".") and d.name.endswith(".partial"):
            try:
                who = (d / OWNER_FILE).read_text().strip()
            except OSError:
                continue  # no owner file: not one of ours to judge (an answered run in the making)
            if owner_alive(who) is False:
                gone.append(d)
    for d in gone:
        shutil.rmtree(d, ignore_errors=True)
    if gone:
        progress(f"removed {len(gone)} unfinished run(s) an earlier kabuild left: {', '.join(d.name for d in gone)}")


def _report(manifest: Manifest, prepared: build_mod.Prepared, run_id: str, key: str, started: str,
            duration: float, image: ImageInfo, pair: Pair, opts: Options, spec1, spec2,
            results: list[PackageResult], ready: Images, timings: tuple[tuple[str, float], ...] = ()) -> Report:
    b = manifest.baseline
    notes = list(pair.notes)
    if spec1 is not None and spec2 is not None and spec1.cpus == spec2.cpus and variations.Variation.CPUS in opts.variations:
        notes.append(f"cpus not varied: both builds used {spec1.cpus} CPU(s) (node {pair.second.engine.name} "
                     f"has {pair.second.engine.cpus})")
    notes += reference_notes(manifest, results)
    return Report(
        kabuild_version=__version__, host=manifest.host, arch=manifest.arch.value, run_id=run_id, inputs_key=key,
        started_at=started, finished_at=utc_now(), duration=round(duration, 1), baseline=(b.name, b.version, b.ref),
        source_date_epoch=b.source_date_epoch, lock_hash=prepared.lock.promotion_hash,
        lock_path=str(prepared.lock.path), recipes=tuple(sorted(recipes.digests(prepared.lock.promoted.recipes).items())),
        image=image.record(), toolchain=image.packages,
        build_mode=build_mode(manifest, pair.first.engine), node_arch=pair.first.engine.arch,
        build1_node=node_use(pair.first), build2_node=node_use(pair.second), same_engine=pair.same_engine,
        variations=tuple(variations.ordered(opts.variations)),
        control=_conditions(spec1), experiment=_conditions(spec2), packages=tuple(results), notes=tuple(notes),
        images=ready.uses(),
        changes=variations.rows(spec1, spec2, opts.variations) if spec1 is not None and spec2 is not None else (),
        timings=timings,
    )


def _conditions(spec) -> BuildConditions:
    return BuildConditions.of(variations.describe(spec) if spec is not None else {})

