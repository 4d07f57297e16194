"""Build nodes (``fleet/nodes.yaml``): the Docker engines a manifest can name, read in one pass."""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import ParseResult

from kabuild.config.document import NAME
from kabuild.config.plausible import node_url_problem, parse_url
from kabuild.config.schema import Section
from kabuild.config.yamlio import load_yaml
from kabuild.errors import ManifestError
from kabuild.files import resolve_path

SCHEMA = 1


class NodeKind(enum.StrEnum):
    UNIX = "unix"
    SSH = "ssh"
    TCP = "tcp"


@dataclass(frozen=True)
class TLS:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Node:
    name: str
    url: str
    kind: NodeKind
    tls: TLS | None = None
    description: str = ""


@dataclass(frozen=True)
class Nodes:
    path: Path
    nodes: dict = field(default_factory=dict)

    def get(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise ManifestError(f"unknown build node {name!r} in fleet/nodes.yaml "
                                f"(known: {', '.join(sorted(self.nodes))})") from None


def _engine_key(kind: NodeKind, parsed: ParseResult) -> tuple[str, ...]:
    """What identifies the engine behind a URL: the socket file (symlinks resolved: /var/run is
    /run), or the host and port (an ssh user name does not change the engine)."""
    if kind is NodeKind.UNIX:
        return (kind.value, os.path.realpath(parsed.path))
    default = 22 if kind is NodeKind.SSH else 2376
    return (kind.value, (parsed.hostname or "").lower().rstrip("."), str(parsed.port or default))


def load_nodes(root: Path) -> Nodes:
    path = root / "fleet" / "nodes.yaml"
    display = "fleet/nodes.yaml"
    top = Section(display, "", load_yaml(path, display))
    schema = top.integer("schema", what=f"the nodes schema version ({SCHEMA})")
    if schema != SCHEMA:
        top.fail("schema", f"expected {SCHEMA}, got {schema}")
    nodes = {}
    engines: dict[tuple[str, ...], str] = {}
    for name, sec in top.map_items("nodes"):
        if not isinstance(name, str) or not re.fullmatch(NAME, name):
            sec.fail("", f"invalid node name {name!r}")
        url = str(sec.text("url", what="unix:///path, ssh://[user@]host or tcp://host:port"))
        parsed = parse_url(sec, "url", url)
        try:
            kind = NodeKind(parsed.scheme)
        except ValueError:
            sec.fail("url", f"expected unix://, ssh:// or tcp://, got {url!r}")
        problem = node_url_problem(kind.value, url, parsed)
        if problem:
            sec.fail("url", problem)
        tls = None
        ts = sec.section("tls", required=False)
        if ts is not None:
            tls = TLS(*(resolve_path(root, ts.text(k, what="a file path", numbers=False)) for k in ("ca", "cert", "key")))
            ts.done()
        if kind is NodeKind.TCP and tls is None:
            sec.fail("tls", "is required for tcp:// nodes (kabuild never talks to an engine in clear text)")
        desc = sec.text("description", required=False, default="")
        sec.done()
        engine = _engine_key(kind, parsed)
        if engine in engines:
            sec.fail("url", f"{url!r} is the same engine as node {engines[engine]!r}: one engine, one name (under two "
                            "names both builds would run on one engine while the report names two nodes)")
        engines[engine] = name
        nodes[name] = Node(name, url, kind, tls, desc)
    top.done()
    return Nodes(path, nodes)
