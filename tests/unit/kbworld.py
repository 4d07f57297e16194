"""A repository copy holding one valid copy of every document kabuild writes, made by the real writers.

:func:`make_world` promotes the demo host (cumulative patch + ``manifest.lock``), records a
``build:`` block in the lock, writes a completed reproduce run (``report.json`` and the
``latest`` link) and a ``reference.yaml``; no Docker, no network.  The run is one that
``kabuild reproduce demo`` answers from without building (same lock, image recipe and
variations, recipes), so a verb reads the reference too.  Tests copy the world and damage one thing.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import reportdocs

from kabuild.build import images, variations
from kabuild.compare import acceptance, references
from kabuild.config import manifest as fleet
from kabuild.config.document import ImageRecord
from kabuild.config.yamlio import write_yaml
from kabuild.files import atomic_symlink, digest_bytes
from kabuild.inputs import lock as lock_mod
from kabuild.inputs import records
from kabuild.inputs.promotion import promote_host
from kabuild.reproduce.identity import inputs_key
from kabuild.reproduce.options import Options

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "demo"
PACKAGE = "kabuild-hello"
FILE = reportdocs.FILE  # kabuild-hello-1.0-1-aarch64.pkg.tar.zst
RUN_ID = "20261122T011500Z-ab12cd34"
PACKAGE_BYTES = b"not really a package, but bytes with a known digest\n"

LOCK = "build/demo/v1.0/manifest.lock"
RUN = f"build/demo/v1.0/runs/{RUN_ID}"
REPORT = f"{RUN}/report.json"
REFERENCE = f"references/{HOST}/{PACKAGE}/reference.yaml"


@dataclass(frozen=True)
class World:
    root: Path

    def path(self, rel: str) -> Path:
        return self.root / rel


def image_record(root: Path) -> ImageRecord:
    recipe = images.recipe(root, fleet.Flavor.DEBIAN, fleet.Arch.AARCH64)
    return ImageRecord(tag=f"kabuild/debian-aarch64:{recipe.hash[:16]}", id="sha256:" + "f6" * 32,
                       recipe_hash=recipe.hash, flavor="debian", arch="aarch64")


def report_dict(root: Path, lock: lock_mod.Lock, image: ImageRecord) -> dict[str, Any]:
    """A completed, reproducible run of the demo package with the default variations."""
    d = digest_bytes(PACKAGE_BYTES)

    def build(n: int) -> dict[str, Any]:
        return {**reportdocs.build(d.sha256, n, b2=d.b2sum, size=d.size)}

    recipes = lock_mod.recipes_mod.digests(lock.promoted.recipes)
    key = inputs_key(lock.promotion_hash, image.recipe_hash, Options(variations=variations.DEFAULT), None, recipes)
    pkg = reportdocs.package(build1=build(1), build2=build(2), reference=None, parity=None, verdict="no-reference",
                             toolchain={"matches_reference": None, "changed": [], "reference_image": None})
    return reportdocs.document([pkg], host=HOST, run_id=RUN_ID, inputs_key=key, lock_hash=lock.promotion_hash,
                               lock_path=LOCK, image=image.to_dict(), recipes=recipes,
                               nodes={"build1": {"node": "local", "requested": "local", "fell_back": False,
                                                 "reason": None, "cpus": 2},
                                      "build2": {"node": "local-2", "requested": "local-2", "fell_back": False,
                                                 "reason": None, "cpus": 1},
                                      "same_engine": False})


def reference_doc(report: acceptance.Report) -> references.ReferenceDoc:
    return references.ReferenceDoc(
        host=HOST, package=PACKAGE, kabuild_version=report.kabuild_version, recorded_at="2026-11-22T01:20:00+00:00",
        from_run=report.run_id, lock_hash=report.lock_hash, source_date_epoch=report.source_date_epoch,
        image=report.image, toolchain=report.toolchain, artifacts=((FILE, digest_bytes(PACKAGE_BYTES), None),))


def make_world(root: Path) -> World:
    root.mkdir(parents=True)
    for part in ("fleet", "patches", "containers"):
        shutil.copytree(REPO_ROOT / part, root / part)
    manifest = fleet.load(root, HOST)[0]
    lock = promote_host(root, manifest).lock
    image = image_record(root)
    block = records.BuildBlock(
        built_at="2026-11-22T01:15:00+00:00", node="local", requested_node="local", fell_back=False, image=image,
        packages=(records.BuiltFile(FILE, digest_bytes(PACKAGE_BYTES), PACKAGE, image.tag),),
        reproduce=records.ReproducedBy(RUN_ID, "accepted"))
    lock = lock_mod.with_build(lock, block)
    run = root / RUN
    for n in (1, 2):
        (run / f"build{n}").mkdir(parents=True)
        (run / f"build{n}" / FILE).write_bytes(PACKAGE_BYTES)
        (run / f"build{n}" / f"{PACKAGE}.log").write_text("==> kabuild: done\n")
    report = acceptance.from_dict(copy.deepcopy(report_dict(root, lock, image)))
    acceptance.write_json(run / acceptance.FILENAME, report)
    atomic_symlink(RUN_ID, run.parent / "latest")
    ref = root / REFERENCE
    ref.parent.mkdir(parents=True)
    write_yaml(ref, reference_doc(report).to_dict())
    return World(root)


def copy_world(template: World, dest: Path) -> World:
    shutil.copytree(template.root, dest, symlinks=True)
    return World(dest)
