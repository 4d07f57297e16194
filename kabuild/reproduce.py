"""The two-node reproduce run (after Debian's remote-build design).

The main node (where kabuild runs) verifies the lock and every source, stages the
contexts and decides the two build specs.  Build 1 (control) runs on the first node
and build 2 (experiment, with variations) on the second, from the same image and the
same SOURCE_DATE_EPOCH, at the same time when the nodes differ.  The packages come
back to the main node, are compared by hash (diffoscope only when hashes differ),
checked against recorded references, and the acceptance report is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import secrets
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import __version__
from . import build as build_mod
from . import compare, images, references, report as report_mod, variations
from .errors import BuildError, ExitCode, KabuildError
from .files import digest_file
from .fleet import Manifest, Nodes
from .lock import build_dir, require_verified, update_lock
from .nodes import Engine, Selection, select
from .sources import SourceCache

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    variations: frozenset
    find_culprit: bool = False
    rebuild: bool = False
    diffoscope_timeout: int = 600


def runs_dir(root: Path, manifest: Manifest) -> Path:
    return build_dir(root, manifest) / "runs"


def latest_report(root: Path, manifest: Manifest) -> Path | None:
    path = runs_dir(root, manifest) / "latest" / "report.json"
    return path if path.is_file() else None


def inputs_key(lock_hash: str, recipe_hash: str, selected: frozenset) -> str:
    text = json.dumps({"lock": lock_hash, "image": recipe_hash, "variations": variations.ordered(selected)},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _run_id() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


def _set_latest(runs: Path, run_dir: Path) -> None:
    tmp = runs / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(run_dir.name, tmp)
    os.replace(tmp, runs / "latest")


def _earlier_run(runs: Path, key: str) -> Path | None:
    if not runs.is_dir():
        return None
    for d in sorted((p for p in runs.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")),
                    reverse=True):
        try:
            data = json.loads((d / "report.json").read_text())
        except (OSError, ValueError):
            continue
        if data.get("inputs_key") == key and data.get("completed") and all(
            p.get("build2") for p in data.get("packages", [])
        ):
            return d
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


def _node_record(sel: Selection) -> dict:
    return {"node": sel.engine.name, "requested": sel.wanted, "fell_back": sel.fell_back, "reason": sel.reason}


# --------------------------------------------------------------------------- building


def _build_into(engine: Engine, image, spec, ctx, out_dir: Path, label: str, progress: Progress):
    try:
        return build_mod.run_build(engine, image, spec, ctx, out_dir, label, progress), None
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


# --------------------------------------------------------------------------- comparing


def _artifact_entry(a: build_mod.Artifact, run_dir: Path, result) -> dict:
    return {**a.digest.as_dict(), "path": a.path.relative_to(run_dir).as_posix(),
            "duration": round(result.duration, 1), "log": result.log.relative_to(run_dir).as_posix()}


def _diff(a: Path, b: Path, out: Path, run_dir: Path, timeout: int) -> dict:
    return compare.diffoscope(a, b, out, timeout=timeout).as_dict(relative_to=run_dir)


def _compare_package(root: Path, manifest: Manifest, pkg_name: str, r1, r2, run_dir: Path, image,
                     opts: Options, progress: Progress) -> list[dict]:
    entries = []
    refs = references.load(root, manifest.host, pkg_name)
    b2 = {a.name: a for a in r2.artifacts} if r2 else {}
    for a1 in r1.artifacts:
        a2 = b2.get(a1.name)
        entry = {"name": pkg_name, "file": a1.name, "build1": _artifact_entry(a1, run_dir, r1),
                 "build2": _artifact_entry(a2, run_dir, r2) if a2 else None,
                 "reference": None, "parity": None, "culprits": None, "error": None,
                 "differences": {"build1_vs_build2": None, "build1_vs_reference": None},
                 "toolchain": {"matches_reference": None, "changed": []}}
        entry["reproducible"] = bool(a2 and compare.same(a1.digest, a2.digest))
        if a2 is None:
            entry["error"] = f"build 2 produced no {a1.name} (it made: {', '.join(sorted(b2)) or 'nothing'})"
        elif not entry["reproducible"]:
            progress(f"{a1.name}: build 1 and build 2 differ; running diffoscope")
            entry["differences"]["build1_vs_build2"] = _diff(
                a1.path, a2.path, run_dir / "diffoscope" / a1.name / "build1-vs-build2", run_dir, opts.diffoscope_timeout)
        _check_reference(root, entry, refs.get(a1.name), a1.digest, a1.path, image, run_dir, opts, progress)
        entries.append(entry)
    return entries


def _check_reference(root: Path, entry: dict, ref, digest, path: Path, image, run_dir: Path, opts: Options,
                     progress: Progress) -> None:
    """Parity of build 1 with its recorded reference, the toolchain difference, and the verdict."""
    entry["reference"], entry["parity"] = None, None
    entry["differences"]["build1_vs_reference"] = None
    entry["toolchain"] = {"matches_reference": None, "changed": []}
    if ref is not None:
        entry["reference"] = ref.as_report(root)
        entry["parity"] = ref.sha256 == digest.sha256 and ref.b2sum == digest.b2sum
        changes = references.toolchain_changes(ref.toolchain, image.packages)
        entry["toolchain"] = {"matches_reference": not changes and ref.image_recipe_hash == image.recipe_hash,
                              "changed": changes, "reference_image": ref.image_tag}
        ref_file = references.artifact_path(ref) if not entry["parity"] else None
        if ref_file is not None:
            progress(f"{entry['file']}: differs from its reference; running diffoscope")
            entry["differences"]["build1_vs_reference"] = _diff(
                ref_file, path, run_dir / "diffoscope" / entry["file"] / "reference-vs-build1", run_dir,
                opts.diffoscope_timeout)
    entry["verdict"] = verdict(entry)


def overall(entries: list[dict]) -> tuple[str, int]:
    """The run's verdict and exit code from its packages' verdicts."""
    if any(e["verdict"] == "build-failed" for e in entries):
        return "rejected", int(ExitCode.BUILD_FAILED)
    if entries and all(e["verdict"] in ("accepted", "no-reference") for e in entries):
        return "accepted", int(ExitCode.OK)
    return "rejected", int(ExitCode.NOT_REPRODUCIBLE)


def verdict(entry: dict) -> str:
    if entry.get("build1") is None or entry.get("build2") is None:
        return "build-failed"
    if not entry["reproducible"]:
        return "not-reproducible"
    if entry["parity"] is False:
        return "parity-failed"
    if entry["parity"] is None:
        return "no-reference"
    return "accepted"


def _failed_entry(pkg_name: str, r1, r2, e1, e2, run_dir: Path) -> dict:
    def side(r):
        if r is None:
            return None
        a = r.artifacts[0]
        return _artifact_entry(a, run_dir, r)
    errors = "; ".join(str(e) for e in (e1, e2) if e)
    return {"name": pkg_name, "file": (r1 or r2).artifacts[0].name if (r1 or r2) else None,
            "build1": side(r1), "build2": side(r2), "reference": None, "reproducible": False, "parity": None,
            "verdict": "build-failed", "differences": {"build1_vs_build2": None, "build1_vs_reference": None},
            "toolchain": {"matches_reference": None, "changed": []}, "culprits": None, "error": errors}


def _find_culprits(pair: Pair, image2, base, selected, ctx, entries: list[dict], run_dir: Path,
                   progress: Progress) -> None:
    """Rerun the experiment with one variation at a time; name those that change the bytes."""
    wanted = {e["file"]: e["build1"]["sha256"] for e in entries if not e["reproducible"] and e["build1"]}
    if not wanted:
        return
    tested: dict[str, dict[str, str]] = {f: {} for f in wanted}
    for v in variations.ORDER:
        if v not in selected:
            continue
        spec = variations.apply(base, frozenset({v}), vary=True)
        label = f"culprit-{v}"
        progress(f"culprit search: rebuilding {ctx.package.name} with only '{v}' varied")
        result, err = _build_into(pair.second.engine, image2, spec, ctx, run_dir / "culprits" / v.value, label, progress)
        got = {a.name: a.digest.sha256 for a in result.artifacts} if result else {}
        for f, sha in wanted.items():
            tested[f][v.value] = "build-failed" if err else ("same" if got.get(f) == sha else "differs")
    for e in entries:
        if e["file"] in tested:
            t = tested[e["file"]]
            e["culprits"] = {"variations": [k for k, s in t.items() if s == "differs"], "tested": t}


# --------------------------------------------------------------------------- the run


def reproduce(root: Path, manifest: Manifest, nodes: Nodes, opts: Options, progress: Progress) -> tuple[dict, Path]:
    lock = require_verified(root, manifest)
    cache = SourceCache()
    contexts = [build_mod.stage(root, manifest, p, lock, cache, progress) for p in manifest.packages]
    recipe = images.recipe(root, manifest.build.flavor, manifest.arch)
    key = inputs_key(lock.promotion_hash, recipe.hash, opts.variations)
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
    started, t0 = _now(), time.monotonic()
    try:
        image1 = images.ensure(root, pair.first.engine, recipe, progress)
        images.check_emulation(pair.first.engine, image1, manifest.arch)
        if pair.same_engine:
            image2 = image1
        else:
            image2 = images.ensure(root, pair.second.engine, recipe, progress)
            images.check_emulation(pair.second.engine, image2, manifest.arch)
        entries = []
        controls = []  # build 1 of every package: what the lock's build: block records
        control_desc = experiment_desc = None
        for ctx in contexts:
            pkg_image1 = images.with_dependencies(pair.first.engine, image1, manifest.build.flavor,
                                                  ctx.dependencies, progress)
            pkg_image2 = pkg_image1 if pair.same_engine else images.with_dependencies(
                pair.second.engine, image2, manifest.build.flavor, ctx.dependencies, progress)
            base = build_mod.base_spec(manifest, ctx.package, pkg_image1)
            base = _with_run_label(base, run_id)
            spec1 = variations.apply(base, opts.variations, vary=False)
            spec2 = variations.apply(base, opts.variations, vary=True)
            control_desc, experiment_desc = variations.describe(spec1), variations.describe(spec2)
            progress(f"{ctx.package.name}: build 1 on {pair.first.engine.name}, build 2 on {pair.second.engine.name}"
                     f" (varying {', '.join(variations.ordered(opts.variations)) or 'nothing'})")
            spec2 = dataclasses.replace(spec2, image=pkg_image2.tag)
            (r1, e1), (r2, e2) = _both(pair, pkg_image1, pkg_image2, spec1, spec2, ctx, partial, progress)
            if e1 or e2:
                entries.append(_failed_entry(ctx.package.name, r1, r2, e1, e2, partial))
                continue
            controls.append(r1)
            pkg_entries = _compare_package(root, manifest, ctx.package.name, r1, r2, partial, pkg_image1, opts,
                                           progress)
            if opts.find_culprit:
                _find_culprits(pair, pkg_image2, dataclasses.replace(base, image=pkg_image2.tag), opts.variations,
                               ctx, pkg_entries, partial, progress)
            entries.extend(pkg_entries)
        data = _report(manifest, lock, run_id, key, started, time.monotonic() - t0, image1, pair,
                       opts, control_desc, experiment_desc, entries)
        report_mod.write(partial, data)
        os.replace(partial, run_dir)
        _set_latest(runs, run_dir)
        if controls:
            record = build_mod.build_record(controls, pair.first, image1, started)
            record["reproduce"] = {"run_id": run_id, "verdict": data["verdict"]}
            update_lock(lock, "build", record)
    except KeyboardInterrupt:
        _remove_run_containers(pair, run_id)
        raise
    finally:
        pair.close()
        if partial.exists() and not run_dir.exists():
            # Keep what a failed run made (logs!) under a name that says it did not finish.
            with contextlib.suppress(OSError):
                os.replace(partial, runs / f"{run_id}.incomplete")
    return data, run_dir


def _with_run_label(spec, run_id: str):
    # The run id travels as a container label, so an interrupted run finds its containers.
    return dataclasses.replace(spec, run_id=run_id)


def _report(manifest, lock, run_id, key, started, duration, image, pair: Pair, opts: Options,
            control, experiment, entries) -> dict:
    run_verdict, exit_code = overall(entries)
    b = manifest.baseline
    notes = list(pair.notes)
    for e in entries:
        if e["verdict"] == "no-reference":
            notes.append(f"{e['file']}: no recorded reference, parity not checked (`kabuild reference record {manifest.host}`)")
    return {
        "schema": report_mod.SCHEMA,
        "kind": "kabuild-acceptance-report",
        "kabuild_version": __version__,
        "host": manifest.host,
        "arch": manifest.arch.value,
        "run_id": run_id,
        "inputs_key": key,
        "completed": True,
        "started_at": started,
        "finished_at": _now(),
        "duration": round(duration, 1),
        "baseline": {"name": b.name, "version": b.version, "ref": b.ref},
        "source_date_epoch": b.source_date_epoch,
        "lock_hash": lock.promotion_hash,
        "lock_path": str(lock.path),
        "image": image.as_dict(),
        "toolchain": list(image.packages),
        "nodes": {"build1": _node_record(pair.first), "build2": _node_record(pair.second),
                  "same_engine": pair.same_engine},
        "variations": {"applied": variations.ordered(opts.variations), "control": control, "experiment": experiment},
        "answered_from": None,
        "packages": entries,
        "verdict": run_verdict,
        "exit_code": exit_code,
        "notes": notes,
    }


def _answer_from(root: Path, manifest: Manifest, earlier: Path, runs: Path, opts: Options,
                 progress: Progress) -> tuple[dict, Path]:
    """Same lock, image and variations as a completed run: reuse its builds, re-check references."""
    old = json.loads((earlier / "report.json").read_text())
    progress(f"inputs (lock, image, variations) match completed run {old['run_id']}: answering from its builds "
             "without building (--rebuild builds again)")
    run_id = _run_id()
    partial = runs / f".{run_id}.partial"
    shutil.copytree(earlier, partial, copy_function=os.link, ignore=shutil.ignore_patterns("report.*"))
    image = images.ImageInfo(old["image"]["tag"], old["image"]["id"], old["image"]["recipe_hash"],
                             old["image"]["flavor"], old["image"]["arch"], tuple(old.get("toolchain", [])))
    entries = []
    for e in old["packages"]:
        e = json.loads(json.dumps(e))
        if e.get("build1"):
            ref = references.load(root, manifest.host, e["name"]).get(e["file"])
            path = partial / e["build1"]["path"]
            _check_reference(root, e, ref, digest_file(path), path, image, partial, opts, progress)
        else:
            e["verdict"] = verdict(e)
        entries.append(e)
    data = dict(old)
    data.update(run_id=run_id, answered_from=old["run_id"], started_at=_now(), finished_at=_now(), duration=0.0,
                packages=entries)
    data["verdict"], data["exit_code"] = overall(entries)
    data["notes"] = [n for n in old.get("notes", []) if "no recorded reference" not in n] + [
        f"answered from run {old['run_id']} without building (same lock, image and variations)"] + [
        f"{e['file']}: no recorded reference, parity not checked" for e in entries if e["verdict"] == "no-reference"]
    report_mod.write(partial, data)
    run_dir = runs / run_id
    os.replace(partial, run_dir)
    _set_latest(runs, run_dir)
    return data, run_dir
