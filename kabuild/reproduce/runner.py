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
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kabuild import __version__
from kabuild.build import host as build_mod
from kabuild.build import variations
from kabuild.build.engines import Engine, Selection, select
from kabuild.build.images import ImageInfo
from kabuild.build.makepkg import run_build
from kabuild.build.spec import Artifact, BuildResult, BuildSpec
from kabuild.compare import acceptance, members, references
from kabuild.compare import diffoscope as compare
from kabuild.compare.acceptance import (
    BuildConditions,
    BuildMode,
    BuiltArtifact,
    Culprits,
    NodeUse,
    PackageResult,
    ReferenceSeen,
    Report,
    ToolchainCheck,
    Verdict,
    verdict_of,
)
from kabuild.compare.differences import ArchiveDifference, Comparison
from kabuild.config.manifest import Kernel, Manifest
from kabuild.config.nodes import Nodes
from kabuild.errors import BuildError, ConfigError, KabuildError
from kabuild.files import atomic_symlink, digest_file
from kabuild.inputs.lock import build_dir, with_build
from kabuild.inputs.records import ReproducedBy
from kabuild.report import render as report_mod
from kabuild.timestamps import utc_now, utc_stamp

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    variations: frozenset
    experiment_cpus: int | None = None  # --vary cpus=N
    find_culprit: bool = False
    rebuild: bool = False
    whole_diffoscope: bool = False  # diffoscope over the whole packages, not only the differing members
    diffoscope_timeout: int = 600


def runs_dir(root: Path, manifest: Manifest) -> Path:
    return build_dir(root, manifest) / "runs"


def latest_report(root: Path, manifest: Manifest) -> Path | None:
    """The latest run's report.json; None only when there is no run at all.  A ``latest`` link
    that points nowhere, or at a run without a readable report, still gives the path, so the
    reader names the damage (exit 3) the way publish does, instead of "no run yet"."""
    latest = runs_dir(root, manifest) / "latest"
    if not latest.is_symlink() and not latest.exists():
        return None
    return latest / acceptance.FILENAME


def load_latest(root: Path, manifest: Manifest) -> tuple[Report, Path] | None:
    """The latest run's report and directory; DocumentError (exit 3) when the report is damaged."""
    path = latest_report(root, manifest)
    if path is None:
        return None
    run_dir = path.resolve().parent
    display = _display(root, run_dir / acceptance.FILENAME)
    report = acceptance.load(path, display)
    return acceptance.check_origin(report, manifest.host, manifest.baseline.ref, display), run_dir


def require_latest(root: Path, manifest: Manifest) -> tuple[Report, Path]:
    """:func:`load_latest`, or a ConfigError (exit 2) saying there is no run yet."""
    latest = load_latest(root, manifest)
    if latest is None:
        raise ConfigError(f"{manifest.host}: no reproduce run yet; run `kabuild reproduce {manifest.host}`")
    return latest


def inputs_key(lock_hash: str, recipe_hash: str, opts: Options, kernel: Kernel | None = None) -> str:
    """What makes two runs the same: the lock, the image, the variations, the CPU counts and, for a
    kernel, the configuration built (the manifest's or its test configuration)."""
    fields: dict[str, Any] = {"lock": lock_hash, "image": recipe_hash, "variations": variations.ordered(opts.variations),
                              "experiment_cpus": opts.experiment_cpus}
    if kernel is not None:
        fields["kernel"] = {"config": kernel.config, "fragments": list(kernel.fragments)}
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _run_id() -> str:
    return utc_stamp() + "-" + secrets.token_hex(4)


def _display(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _earlier_run(runs: Path, key: str) -> tuple[Report, Path] | None:
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


# --------------------------------------------------------------------------- nodes


@dataclass
class Pair:
    first: Selection
    second: Selection
    notes: list

    @property
    def same_engine(self) -> bool:
        return self.first.engine is self.second.engine

    def close(self) -> None:
        self.first.engine.close()
        if not self.same_engine:
            self.second.engine.close()


def connect_pair(manifest: Manifest, nodes: Nodes) -> Pair:
    n = manifest.build.nodes
    first = select(nodes, n.control, n.fallback)
    notes = []
    if first.fell_back:
        notes.append(f"node {n.control} is down: build 1 ran on fallback {first.engine.name} ({first.reason})")
    if n.experiment == first.engine.name:
        second = Selection(first.engine, n.experiment, False, "")
    else:
        try:
            second = select(nodes, n.experiment, n.fallback if n.fallback != first.engine.name else None)
        except KabuildError as e:
            # Only one engine answers: both builds run on it, and the report says so.
            second = Selection(first.engine, n.experiment, True, str(e))
        if second.fell_back:
            notes.append(f"node {n.experiment} is down: build 2 ran on {second.engine.name} ({second.reason})")
        if second.engine.name == first.engine.name and second.engine is not first.engine:
            second.engine.close()
            second = Selection(first.engine, second.wanted, second.fell_back, second.reason)
    pair = Pair(first, second, notes)
    if pair.same_engine:
        notes.append(f"both builds ran on the same engine ({first.engine.name}); only the variations differ")
    return pair


def _node_use(sel: Selection) -> NodeUse:
    return NodeUse(sel.engine.name, sel.wanted, sel.fell_back, sel.reason, sel.engine.cpus)


def build_mode(manifest: Manifest, engine: Engine) -> BuildMode:
    if getattr(manifest.build, "cross", False):
        return BuildMode.CROSS
    return BuildMode.NATIVE if engine.arch == manifest.arch.value else BuildMode.EMULATED


# --------------------------------------------------------------------------- building


def _build_into(engine: Engine, image, spec, ctx, out_dir: Path, label: str, progress: Progress):
    try:
        return run_build(engine, image, spec, ctx, out_dir, label, progress), None
    except BuildError as e:
        return None, e


def _both(pair: Pair, image1, image2, spec1, spec2, ctx, run_dir: Path, progress: Progress):
    if pair.same_engine:
        r1 = _build_into(pair.first.engine, image1, spec1, ctx, run_dir / "build1", "build1", progress)
        r2 = _build_into(pair.second.engine, image2, spec2, ctx, run_dir / "build2", "build2", progress)
        return r1, r2
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        f1 = pool.submit(_build_into, pair.first.engine, image1, spec1, ctx, run_dir / "build1", "build1", progress)
        f2 = pool.submit(_build_into, pair.second.engine, image2, spec2, ctx, run_dir / "build2", "build2", progress)
        return f1.result(), f2.result()
    except KeyboardInterrupt:
        # Remove both containers now: that ends the builds, so the threads can finish.
        _remove_run_containers(pair, spec1.run_id)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _remove_run_containers(pair: Pair, run_id: str) -> None:
    for engine in {id(pair.first.engine): pair.first.engine, id(pair.second.engine): pair.second.engine}.values():
        with contextlib.suppress(Exception):
            for c in engine.client.containers.list(all=True, filters={"label": f"org.kabuild.run={run_id}"}):
                c.remove(force=True)


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


def compare_pair(first: Path, second: Path, out: Path, run_dir: Path, opts: Options, progress: Progress,
                 what: str) -> Comparison:
    """Members first (seconds, names the culprits), then diffoscope on only those members."""
    progress(f"{what}: hashing every member of both packages")
    found = members.compare_packages(first, second)
    progress(f"{what}: {found.summary()}")
    diff = None
    if opts.whole_diffoscope or found.kind is ArchiveDifference.UNKNOWN:
        progress(f"{what}: running diffoscope on the whole packages")
        diff = compare.diffoscope(first, second, out / "packages", timeout=opts.diffoscope_timeout)
    elif found.culprits:
        progress(f"{what}: running diffoscope on the {len(found.culprits)} differing member(s)")
        diff = compare.diffoscope_members(first, second, found.culprits, out / "members",
                                          timeout=opts.diffoscope_timeout)
    return Comparison(found, diff.relative_to(run_dir) if diff is not None else None)


def _package_result(root: Path, manifest: Manifest, name: str, r1, r2, run_dir: Path, image: ImageInfo,
                    opts: Options, progress: Progress) -> list[PackageResult]:
    out = []
    refs = references.load(root, manifest.host, name)
    b2 = {a.name: a for a in r2.artifacts}
    for a1 in r1.artifacts:
        a2 = b2.get(a1.name)
        error = None if a2 else f"build 2 produced no {a1.name} (it made: {', '.join(sorted(b2)) or 'nothing'})"
        same = bool(a2 and compare.same(a1.digest, a2.digest))
        pair = None
        if a2 is not None and not same:
            pair = compare_pair(a1.path, a2.path, run_dir / "diffoscope" / a1.name / "build1-vs-build2", run_dir,
                                opts, progress, f"{a1.name} build 1 vs build 2")
        result = PackageResult(name=name, file=a1.name, build1=_artifact(a1, run_dir, r1),
                               build2=_artifact(a2, run_dir, r2) if a2 else None, reproducible=same,
                               verdict=Verdict.BUILD_FAILED, build1_vs_build2=pair, error=error)
        out.append(check_reference(root, result, refs.get(a1.name), a1.path, image, run_dir, opts, progress))
    return out


def check_reference(root: Path, result: PackageResult, ref, path: Path, image: ImageInfo, run_dir: Path,
                    opts: Options, progress: Progress) -> PackageResult:
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


def _failed(name: str, r1, r2, e1, e2, run_dir: Path) -> PackageResult:
    def side(r):
        return _artifact(r.artifacts[0], run_dir, r) if r is not None else None
    done = r1 or r2
    return PackageResult(name=name, file=done.artifacts[0].name if done else None, build1=side(r1), build2=side(r2),
                         reproducible=False, verdict=Verdict.BUILD_FAILED,
                         error="; ".join(str(e) for e in (e1, e2) if e))


def _find_culprits(pair: Pair, image2, base, selected, ctx, results: list[PackageResult], run_dir: Path,
                   progress: Progress) -> list[PackageResult]:
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
        result, err = _build_into(pair.second.engine, image2, spec, ctx, run_dir / "culprits" / v.value, label, progress)
        got = {a.name: a.digest.sha256 for a in result.artifacts} if result else {}
        for f, sha in wanted.items():
            tested[f][v.value] = "build-failed" if err else ("same" if got.get(f) == sha else "differs")
    return [dataclasses.replace(r, culprits=Culprits(tuple(k for k, s in tested[r.file].items() if s == "differs"),
                                                    tuple(tested[r.file].items())))
            if r.file in tested else r for r in results]


# --------------------------------------------------------------------------- the run


def reproduce(root: Path, manifest: Manifest, nodes: Nodes, opts: Options, progress: Progress) -> tuple[Report, Path]:
    prepared = build_mod.prepare(root, manifest, progress)
    lock = prepared.lock
    key = inputs_key(lock.promotion_hash, prepared.recipe.hash, opts, manifest.kernel)
    runs = runs_dir(root, manifest)
    runs.mkdir(parents=True, exist_ok=True)

    if not opts.rebuild and not opts.find_culprit:
        earlier = _earlier_run(runs, key)
        if earlier is not None:
            return _answer_from(root, manifest, earlier, runs, opts, progress)

    pair = connect_pair(manifest, nodes)
    run_id = _run_id()
    partial = runs / f".{run_id}.partial"
    run_dir = runs / run_id
    started, t0 = utc_now(), time.monotonic()
    try:
        image1 = build_mod.ready_image(root, pair.first.engine, prepared, progress)
        image2 = image1 if pair.same_engine else build_mod.ready_image(root, pair.second.engine, prepared, progress)
        results: list[PackageResult] = []
        controls = []  # build 1 of every package: what the lock's build: block records
        spec1 = spec2 = None
        for ctx in prepared.contexts:
            pkg_image1 = build_mod.package_image(pair.first.engine, image1, prepared, ctx, progress)
            pkg_image2 = pkg_image1 if pair.same_engine else build_mod.package_image(
                pair.second.engine, image2, prepared, ctx, progress)
            base = dataclasses.replace(build_mod.base_spec(manifest, ctx.package, pkg_image1), run_id=run_id)
            base, spec1, spec2 = _specs(base, pair, opts, pkg_image2)
            progress(f"{ctx.package.name}: build 1 on {pair.first.engine.name} ({spec1.cpus} CPU), build 2 on "
                     f"{pair.second.engine.name} ({spec2.cpus} CPU), varying "
                     f"{', '.join(variations.ordered(opts.variations)) or 'nothing'}")
            (r1, e1), (r2, e2) = _both(pair, pkg_image1, pkg_image2, spec1, spec2, ctx, partial, progress)
            if e1 or e2:
                results.append(_failed(ctx.package.name, r1, r2, e1, e2, partial))
                continue
            controls.append(r1)
            found = _package_result(root, manifest, ctx.package.name, r1, r2, partial, pkg_image1, opts, progress)
            if opts.find_culprit:
                found = _find_culprits(pair, pkg_image2, dataclasses.replace(base, image=pkg_image2.tag),
                                       opts.variations, ctx, found, partial, progress)
            results.extend(found)
        report = _report(manifest, prepared, run_id, key, started, time.monotonic() - t0, image1, pair, opts,
                         spec1, spec2, results)
        report_mod.write(partial, report)
        os.replace(partial, run_dir)
        atomic_symlink(run_dir.name, runs / "latest")
        if controls:
            with_build(lock, build_mod.build_block(controls, pair.first, image1, started,
                                                   ReproducedBy(run_id, str(report.verdict))))
    except KeyboardInterrupt:
        _remove_run_containers(pair, run_id)
        raise
    finally:
        pair.close()
        if partial.exists() and not run_dir.exists():
            # Keep what a failed run made (logs!) under a name that says it did not finish.
            with contextlib.suppress(OSError):
                os.replace(partial, runs / f"{run_id}.incomplete")
    return report, run_dir


def _report(manifest: Manifest, prepared: build_mod.Prepared, run_id: str, key: str, started: str,
            duration: float, image: ImageInfo, pair: Pair, opts: Options, spec1, spec2,
            results: list[PackageResult]) -> Report:
    b = manifest.baseline
    notes = list(pair.notes)
    if spec1 is not None and spec2 is not None and spec1.cpus == spec2.cpus and variations.Variation.CPUS in opts.variations:
        notes.append(f"cpus not varied: both builds used {spec1.cpus} CPU(s) (node {pair.second.engine.name} "
                     f"has {pair.second.engine.cpus})")
    notes += _reference_notes(manifest, results)
    return Report(
        kabuild_version=__version__, host=manifest.host, arch=manifest.arch.value, run_id=run_id, inputs_key=key,
        started_at=started, finished_at=utc_now(), duration=round(duration, 1), baseline=(b.name, b.version, b.ref),
        source_date_epoch=b.source_date_epoch, lock_hash=prepared.lock.promotion_hash,
        lock_path=str(prepared.lock.path), image=image.record(), toolchain=image.packages,
        build_mode=build_mode(manifest, pair.first.engine), node_arch=pair.first.engine.arch,
        build1_node=_node_use(pair.first), build2_node=_node_use(pair.second), same_engine=pair.same_engine,
        variations=tuple(variations.ordered(opts.variations)),
        control=_conditions(spec1), experiment=_conditions(spec2), packages=tuple(results), notes=tuple(notes),
    )


def _conditions(spec) -> BuildConditions:
    return BuildConditions.of(variations.describe(spec) if spec is not None else {})


def _reference_notes(manifest: Manifest, results: list[PackageResult]) -> list[str]:
    return [f"{r.file}: no recorded reference, parity not checked (`kabuild reference record {manifest.host}`)"
            for r in results if r.verdict is Verdict.NO_REFERENCE]


def _answer_from(root: Path, manifest: Manifest, earlier: tuple[Report, Path], runs: Path, opts: Options,
                 progress: Progress) -> tuple[Report, Path]:
    """Same lock, image and variations as a completed run: reuse its builds, re-check references."""
    old, old_dir = earlier
    progress(f"inputs (lock, image, variations) match completed run {old.run_id}: answering from its builds "
             "without building (--rebuild builds again)")
    # every reference is read before anything is written: a damaged one leaves no half-made run behind
    refs = {p.name: references.load(root, manifest.host, p.name) for p in old.packages
            if p.build1 is not None and p.file is not None}
    run_id = _run_id()
    partial = runs / f".{run_id}.partial"
    run_dir = runs / run_id
    shutil.copytree(old_dir, partial, copy_function=os.link, ignore=shutil.ignore_patterns("report.*"))
    try:
        image = ImageInfo(old.image.tag, old.image.id, old.image.recipe_hash, old.image.flavor, old.image.arch,
                          old.toolchain)
        results = []
        for p in old.packages:
            if p.build1 is not None and p.file is not None:
                p = check_reference(root, p, refs[p.name].get(p.file), partial / p.build1.path, image, partial,
                                    opts, progress)
            results.append(p)
        notes = [n for n in old.notes if "no recorded reference" not in n]
        notes += [f"answered from run {old.run_id} without building (same lock, image and variations)"]
        notes += _reference_notes(manifest, results)
        now = utc_now()
        report = dataclasses.replace(old, run_id=run_id, answered_from=old.run_id, started_at=now, finished_at=now,
                                     duration=0.0, packages=tuple(results), notes=tuple(notes))
        report_mod.write(partial, report)
        os.replace(partial, run_dir)
    finally:
        if partial.exists() and not run_dir.exists():
            shutil.rmtree(partial, ignore_errors=True)  # hard links only: the earlier run keeps its files
    atomic_symlink(run_dir.name, runs / "latest")
    return report, run_dir
