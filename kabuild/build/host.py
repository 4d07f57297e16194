"""A host's build on one node (`kabuild build`), and the steps `kabuild reproduce` shares with it:
the lock verified, every source verified, contexts staged, images ready."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kabuild.build import depnames, images, kernel
from kabuild.build.containers import clear_leftovers
from kabuild.build.context import stage
from kabuild.build.engines import Engine, Selection, select
from kabuild.build.images import ImageInfo, Recipe
from kabuild.build.makepkg import run_build
from kabuild.build.spec import (
    BuildResult,
    BuildSpec,
    Context,
)
from kabuild.config.manifest import Manifest, Package
from kabuild.config.nodes import Nodes
from kabuild.files import atomic_symlink
from kabuild.inputs.lock import Lock, build_dir, require_verified, with_build
from kabuild.inputs.records import BuildBlock, BuiltFile, ReproducedBy
from kabuild.inputs.sources import SourceCache
from kabuild.timestamps import utc_now, utc_stamp

# --------------------------------------------------------------------------- staging


# --------------------------------------------------------------------------- running


# --------------------------------------------------------------------------- a host's build
#
# `kabuild build` (one node) and `kabuild reproduce` (two nodes) share these steps.


@dataclass(frozen=True)
class Prepared:
    """A host ready to build anywhere: lock verified, every source verified, contexts staged."""

    manifest: Manifest
    lock: Lock
    contexts: tuple[Context, ...]
    recipe: Recipe


def prepare(root: Path, manifest: Manifest, progress: Callable[[str], None]) -> Prepared:
    """Everything that can be refused before any container exists (exit 2/3)."""
    lock = require_verified(root, manifest)
    cache = SourceCache()
    contexts = tuple(stage(root, manifest, p, lock, cache, progress) for p in manifest.packages)
    # Arch dependency names -> the flavor's packages; an unmapped name is refused here (exit 2)
    contexts = tuple(dataclasses.replace(c, dependencies=depnames.for_flavor(
        root, manifest.build.flavor, c.package.name, c.dependencies)) for c in contexts)
    return Prepared(manifest, lock, contexts, images.recipe(root, manifest.build.flavor, kernel.image_arch(manifest)))


def ready_image(root: Path, engine: Engine, prepared: Prepared, progress: Callable[[str], None]) -> ImageInfo:
    """The recipe's image on ``engine`` (built or imported once), able to run there."""
    image = images.ensure(root, engine, prepared.recipe, progress)
    images.check_emulation(engine, image, prepared.recipe.arch)
    return image


def package_image(engine: Engine, image: ImageInfo, prepared: Prepared, ctx: Context,
                  progress: Callable[[str], None]) -> ImageInfo:
    """The image plus the package's build dependencies (a cached layer)."""
    return images.with_dependencies(engine, image, prepared.manifest.build.flavor, ctx.dependencies, progress)


def base_spec(manifest: Manifest, package: Package, image: ImageInfo, node_cpus: int = 1) -> BuildSpec:
    return BuildSpec(
        host=manifest.host,
        package=package.name,
        arch=manifest.arch,
        image=image.tag,
        source_date_epoch=manifest.baseline.source_date_epoch,
        timeout=manifest.build.timeout,
        cpus=node_cpus,
        node_cpus=node_cpus,
        vary_cpus=node_cpus,
    )


def build_block(results: list[BuildResult], selection: Selection, image: ImageInfo, built_at: str,
                reproduce: ReproducedBy | None = None) -> BuildBlock:
    return BuildBlock(
        built_at=built_at, node=selection.engine.name, requested_node=selection.wanted,
        fell_back=selection.fell_back, image=image.record(),
        packages=tuple(BuiltFile(a.name, a.digest, r.spec.package, r.image.tag) for r in results for a in r.artifacts),
        reproduce=reproduce,
    )


@dataclass(frozen=True)
class HostBuild:
    results: tuple[BuildResult, ...]
    directory: Path  # build/<host>/<ref>/builds/<stamp>, also linked as last-build
    block: BuildBlock
    lock: Lock


def build_host(root: Path, manifest: Manifest, nodes: Nodes, node: str | None,
               progress: Callable[[str], None]) -> HostBuild:
    """One clean build of every package on one node; recorded in the lock's build: block."""
    prepared = prepare(root, manifest, progress)
    wanted = node or manifest.build.nodes.control
    sel = select(nodes, wanted, None if node else manifest.build.nodes.fallback)
    if sel.fell_back:
        progress(f"node {wanted} is unreachable ({sel.reason}); using fallback node {sel.engine.name}")
    engine = sel.engine
    gone = clear_leftovers(engine)
    if gone:
        progress(f"node {engine.name}: removed {len(gone)} container(s) an earlier kabuild run left when it was "
                 f"killed or lost the node: {', '.join(gone)}")
    bdir = build_dir(root, manifest)
    # Every build gets its own directory (logs of failed builds stay where the error says);
    # last-build points at the latest successful one.
    out = bdir / "builds" / f"{utc_stamp()}-{os.getpid()}"
    try:
        image = ready_image(root, engine, prepared, progress)
        results = []
        for ctx in prepared.contexts:
            pkg_image = package_image(engine, image, prepared, ctx, progress)
            spec = base_spec(manifest, ctx.package, pkg_image, engine.cpus)
            progress(f"building {ctx.package.name} for {manifest.arch} on node {engine.name} "
                     f"({pkg_image.tag}, {spec.cpus} CPU(s))")
            results.append(run_build(engine, pkg_image, spec, ctx, out, "build", progress))
        atomic_symlink(out.relative_to(bdir), bdir / "last-build")
    finally:
        engine.close()
    block = build_block(results, sel, image, utc_now())
    return HostBuild(tuple(results), bdir / "last-build", block, with_build(prepared.lock, block))
