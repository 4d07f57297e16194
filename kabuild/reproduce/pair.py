"""The two engines of a reproduce run: control and experiment, with the manifest's fallback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kabuild.build.engines import Engine, Selection, select
from kabuild.build.makepkg import run_build
from kabuild.compare.acceptance import (
    BuildMode,
    NodeUse,
)
from kabuild.config.manifest import Manifest
from kabuild.config.nodes import Nodes
from kabuild.errors import BuildError, KabuildError

Progress = Callable[[str], None]


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


def node_use(sel: Selection) -> NodeUse:
    return NodeUse(sel.engine.name, sel.wanted, sel.fell_back, sel.reason, sel.engine.cpus)


def build_mode(manifest: Manifest, engine: Engine) -> BuildMode:
    if getattr(manifest.build, "cross", False):
        return BuildMode.CROSS
    return BuildMode.NATIVE if engine.arch == manifest.arch.value else BuildMode.EMULATED


def remove_run_containers(pair: Pair, run_id: str) -> None:
    for engine in {id(pair.first.engine): pair.first.engine, id(pair.second.engine): pair.second.engine}.values():
        with contextlib.suppress(Exception):
            for c in engine.client.containers.list(all=True, filters={"label": f"org.kabuild.run={run_id}"}):
                c.remove(force=True)


def build_on(engine: Engine, image, spec, ctx, out_dir: Path, label: str, progress: Progress,
             final_dir: Path | None = None):
    try:
        return run_build(engine, image, spec, ctx, out_dir, label, progress, final_dir), None
    except BuildError as e:
        return None, e
