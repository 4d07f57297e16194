"""`kabuild nodes`: what each build node is, checked in parallel, each within its own bounds."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker.errors
import requests.exceptions

from kabuild.build.engines import Engine, connect
from kabuild.config.nodes import Node, Nodes
from kabuild.errors import KabuildError

FOREIGN = {"x86_64": "aarch64", "aarch64": "x86_64"}  # the architecture emulation is checked for


@dataclass(frozen=True)
class NodeCheck:
    name: str
    url: str
    description: str
    reachable: bool
    reason: str = ""  # why it is not reachable, one line
    version: str = ""
    arch: str = ""
    cpus: int = 0
    emulation: str = ""  # "<arch>: yes | no (…) | unknown (…)"
    images: tuple[str, ...] = field(default_factory=tuple)  # kabuild/* tags the engine holds
    rtt_ms: float | None = None
    seconds: float = 0.0  # how long the whole check took

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "description": self.description, "reachable": self.reachable,
                "reason": self.reason or None, "engine_version": self.version or None, "arch": self.arch or None,
                "cpus": self.cpus or None, "emulation": self.emulation or None, "images": list(self.images),
                "rtt_ms": self.rtt_ms, "seconds": round(self.seconds, 2)}


def _emulation(engine: Engine, tags: list[str]) -> str:
    foreign = FOREIGN.get(engine.arch)
    if foreign is None:
        return ""
    candidates = [t for t in tags if t.startswith(f"kabuild/debian-{foreign}:") or f"-{foreign}:" in t]
    if not candidates:
        return f"{foreign}: unknown (no kabuild {foreign} image on the node to try; `kabuild image ship` one)"
    try:
        engine.client.containers.run(candidates[0], ["/bin/true"], network_mode="none", remove=True,
                                     user="1000:1000", labels={"org.kabuild.role": "emulation-check"})
    except (docker.errors.ContainerError, docker.errors.APIError) as e:
        return f"{foreign}: no ({' '.join(str(e).split())[:160]})"
    return f"{foreign}: yes (ran {candidates[0]})"


def check(node: Node) -> NodeCheck:
    t0 = time.monotonic()
    try:
        engine = connect(node)
    except KabuildError as e:
        return NodeCheck(node.name, node.url, node.description, False, str(e), seconds=time.monotonic() - t0)
    try:
        tags = sorted(t for image in engine.client.images.list(name="kabuild/*") for t in image.tags)
        emulation = _emulation(engine, tags)
        return NodeCheck(node.name, node.url, node.description, True, "", engine.version, engine.arch, engine.cpus,
                         emulation, tuple(tags), round(engine.rtt * 1000, 2), time.monotonic() - t0)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as e:
        return NodeCheck(node.name, node.url, node.description, False, engine.lost(e, "while it was checked").message,
                         seconds=time.monotonic() - t0)
    finally:
        engine.close()


def check_nodes(nodes: Nodes, names: list[str]) -> list[NodeCheck]:
    """Every named node (all when none is named), checked at the same time."""
    chosen = [nodes.get(n) for n in names] if names else [nodes.nodes[n] for n in sorted(nodes.nodes)]
    if not chosen:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(chosen))) as pool:
        return list(pool.map(check, chosen))
