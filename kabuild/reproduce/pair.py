"""The two engines of a reproduce run: control and experiment, with the manifest's fallback, and
one image for both (made on the control engine, shipped to the experiment engine by image ID)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kabuild.build import host as build_mod
from kabuild.build import images
from kabuild.build.containers import clear_leftovers
from kabuild.build.engines import Engine, Selection, connect, select
from kabuild.build.images import ImageInfo
from kabuild.build.makepkg import run_build
from kabuild.build.spec import Context
from kabuild.compare.acceptance import (
    BuildMode,
    ImageUse,
    NodeUse,
)
from kabuild.config.manifest import Manifest
from kabuild.config.nodes import Nodes
from kabuild.errors import BuildError, KabuildError, RefusalError

Progress = Callable[[str], None]


@dataclass
class Pair:
    first: Selection
    second: Selection
    notes: list

    @property
    def same_engine(self) -> bool:
        return self.first.engine is self.second.engine

    @property
    def engines(self) -> tuple[Engine, ...]:
        return (self.first.engine,) if self.same_engine else (self.first.engine, self.second.engine)

    def close(self) -> None:
        for engine in self.engines:
            engine.close()


def connect_pair(manifest: Manifest, nodes: Nodes, progress: Progress) -> Pair:
    n = manifest.build.nodes
    first = select(nodes, n.control, n.fallback)
    notes = []
    if first.fell_back:
        notes.append(f"node {n.control} is down: build 1 ran on fallback {first.engine.name} ({first.reason})")
        progress(notes[-1])
    if n.experiment == first.engine.name:
        second = Selection(first.engine, n.experiment, False, "")
    else:
        try:
            second = select(nodes, n.experiment, n.fallback if n.fallback != first.engine.name else None)
        except KabuildError as e:
            # Only one engine answers: both builds run on it (single-engine), and the report says so.
            second = Selection(first.engine, n.experiment, True, str(e))
        if second.fell_back:
            notes.append(f"node {n.experiment} is down: build 2 ran on {second.engine.name} ({second.reason})")
            progress(notes[-1])
        if second.engine.name == first.engine.name and second.engine is not first.engine:
            second.engine.close()
            second = Selection(first.engine, second.wanted, second.fell_back, second.reason)
    pair = Pair(first, second, notes)
    if pair.same_engine:
        notes.append(f"single-engine run: both builds ran on {first.engine.name}; only the variations differ "
                     "(the publish gate refuses it unless the manifest says build.single_engine: allowed)")
        progress(notes[-1])
    for engine in pair.engines:
        gone = clear_leftovers(engine)
        if gone:
            progress(f"node {engine.name}: removed {len(gone)} container(s) an earlier kabuild run left when it "
                     f"was killed or lost the node: {', '.join(gone)}")
    return pair


def node_use(sel: Selection) -> NodeUse:
    return NodeUse(sel.engine.name, sel.wanted, sel.fell_back, sel.reason, sel.engine.cpus)


def build_mode(manifest: Manifest, engine: Engine) -> BuildMode:
    if getattr(manifest.build, "cross", False):
        return BuildMode.CROSS
    return BuildMode.NATIVE if engine.arch == manifest.arch.value else BuildMode.EMULATED


@dataclass(frozen=True)
class Images:
    """The base image and, per package, the one image both builds use (base + dependency layer)."""

    base: ImageInfo
    packages: tuple[ImageInfo, ...]  # in the order of the prepared contexts

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.base.id, *(i.id for i in self.packages))

    def uses(self) -> tuple[ImageUse, ...]:
        seen: dict[str, ImageUse] = {}
        for info in self.packages:
            seen.setdefault(info.id, ImageUse(info.record(), info.packages))
        return tuple(seen.values())


def ready_images(root: Path, pair: Pair, prepared: build_mod.Prepared, progress: Progress) -> Images:
    """One toolchain for both builds: the base image and every dependency layer are made on the
    control engine and shipped to the experiment engine (once per image ID)."""
    first, second = pair.first.engine, pair.second.engine
    base = build_mod.ready_image(root, first, prepared, progress)
    if not pair.same_engine:
        images.ship(first, second, base, progress)
        images.check_emulation(second, base, prepared.recipe.arch)
    out = []
    for ctx in prepared.contexts:
        layer = build_mod.package_image(first, base, prepared, ctx, progress)
        if not pair.same_engine and layer.id != base.id:  # a package without dependencies builds in the base
            images.ship(first, second, layer, progress)
        out.append(layer)
    return Images(base, tuple(out))


def same_image(ctx: Context, image: ImageInfo, pair: Pair) -> None:
    """Refuse (exit 3) to compare builds that would not run from the same image ID."""
    if pair.same_engine:
        return
    ids = []
    for engine in pair.engines:
        try:
            ids.append(engine.client.images.get(image.tag).id)
        except Exception as e:  # a vanished image or node: say which
            raise RefusalError(f"{ctx.package.name}: cannot confirm that {image.tag} is {image.id[:19]} on "
                               f"{engine.name} ({e}); the two builds must use the same image") from None
    if len(set(ids)) != 1 or ids[0] != image.id:
        raise RefusalError(f"{ctx.package.name}: the two builds would use different images "
                           f"({pair.first.engine.name}: {ids[0][:19]}, {pair.second.engine.name}: {ids[-1][:19]}) "
                           f"for {image.tag}; kabuild compares only builds made from the same image ID")


def remove_run_containers(pair: Pair, run_id: str) -> None:
    """Every container of the run, on every engine; an engine that is lost is tried once more on a
    fresh connection (a dropped connection is not a dead node), and otherwise left to the next run."""
    for engine in pair.engines:
        try:
            _remove_run(engine, run_id)
        except Exception:
            with contextlib.suppress(Exception):
                fresh = connect(engine.node)
                try:
                    _remove_run(fresh, run_id)
                finally:
                    fresh.close()


def _remove_run(engine: Engine, run_id: str) -> None:
    for c in engine.client.containers.list(all=True, filters={"label": f"org.kabuild.run={run_id}"}):
        c.remove(force=True)


def build_on(engine: Engine, image, spec, ctx, out_dir: Path, label: str, progress: Progress,
             final_dir: Path | None = None):
    try:
        return run_build(engine, image, spec, ctx, out_dir, label, progress, final_dir), None
    except BuildError as e:
        return None, e

