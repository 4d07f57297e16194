"""Build nodes (``fleet/nodes.yaml``): the Docker engines a manifest can name, read in one pass.

A node that cannot be used as written (a ``tcp://`` node without ``tls:``) is still read: the
refusal is kept as :attr:`Node.problem` and raised only when a command connects to that node,
so one half-configured node never blocks the commands that do not use it.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import ParseResult, urlparse

from kabuild.config.document import NAME
from kabuild.config.plausible import node_url_problem, parse_url
from kabuild.config.schema import Section
from kabuild.config.yamlio import load_yaml
from kabuild.errors import ConfigError, ManifestError
from kabuild.files import resolve_path

SCHEMA = 1
DEFAULT_CONNECT_TIMEOUT = 10  # seconds: ssh ConnectTimeout (TCP + handshake), TCP/TLS connect
MAX_CONNECT_TIMEOUT = 120
# ssh options kabuild always sets itself: a node must never prompt, and host keys are checked strictly.
FIXED_SSH_OPTIONS = ("batchmode", "stricthostkeychecking", "connecttimeout")
_SSH_OPTION = re.compile(r"([A-Za-z][A-Za-z0-9]*)=(\S.*)")


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
class SSH:
    """How the system OpenSSH client reaches an ``ssh://`` node (``~/.ssh/config`` applies unless
    ``config`` names another file)."""

    destination: str  # host or alias, as ssh resolves it (HostName, Port, ProxyJump from ssh_config)
    user: str | None = None
    port: int | None = None  # only when the URL names one: otherwise ssh_config's Port (or 22)
    identity: Path | None = None
    known_hosts: Path | None = None
    config: Path | None = None
    options: tuple[str, ...] = ()  # extra "Key=Value" options, passed as -o


@dataclass(frozen=True)
class Node:
    name: str
    url: str
    kind: NodeKind
    tls: TLS | None = None
    description: str = ""
    ssh: SSH | None = None
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    problem: str | None = None  # why the node cannot be used; raised when a command connects to it

    def usable(self) -> Node:
        """The node, or ConfigError (exit 2) when it is written in a way kabuild refuses to use."""
        if self.problem:
            raise ConfigError(f"build node {self.name} ({self.url}): {self.problem}")
        return self


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


def _ssh(root: Path, sec: Section, url: str) -> SSH:
    parsed = urlparse(url)
    host = parsed.hostname or ""  # a host starting with '-' is refused with the URL (plausible.node_url_problem)
    if parsed.path not in ("", "/"):
        sec.fail("url", f"expected ssh://[user@]host[:port] with no path, got {url!r}")

    def path(key: str, what: str) -> Path | None:
        text = sec.text(key, required=False, what=what, numbers=False)
        return resolve_path(root, text) if text is not None else None

    options = []
    seq = sec.sequence("ssh_options", required=False) or []
    for i, item in enumerate(seq):
        m = _SSH_OPTION.fullmatch(item) if isinstance(item, str) else None
        line = sec.item_line("ssh_options", i)
        if m is None:
            sec.fail("ssh_options", f"item {i}: expected an ssh option as Key=Value (e.g. ProxyJump=bastion), "
                                    f"got {item!r}", line)
        if m.group(1).lower() in FIXED_SSH_OPTIONS:
            sec.fail("ssh_options", f"item {i}: {m.group(1)} is set by kabuild (BatchMode=yes, "
                                    "StrictHostKeyChecking=yes, ConnectTimeout from connect_timeout): a build node "
                                    "never prompts and its host key is always checked", line)
        options.append(item)
    return SSH(host, parsed.username, parsed.port, path("identity", "a private key file"),
               path("known_hosts", "a known_hosts file"), path("ssh_config", "an ssh_config file"), tuple(options))


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
        url = str(sec.text("url", what="unix:///path, ssh://[user@]host[:port] or tcp://host:port"))
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
            if kind is not NodeKind.TCP:
                sec.fail("tls", f"only tcp:// nodes use TLS files; {kind}:// nodes do not")
            tls = TLS(*(resolve_path(root, ts.text(k, what="a file path", numbers=False)) for k in ("ca", "cert", "key")))
            ts.done()
        ssh = _ssh(root, sec, url) if kind is NodeKind.SSH else None
        if ssh is None:
            for key in ("identity", "known_hosts", "ssh_config", "ssh_options"):
                if key in sec.data:
                    sec.fail(key, f"only ssh:// nodes take {key}")
        timeout = sec.integer("connect_timeout", required=False, default=DEFAULT_CONNECT_TIMEOUT, minimum=1)
        if timeout > MAX_CONNECT_TIMEOUT:
            sec.fail("connect_timeout", f"{timeout} is more than {MAX_CONNECT_TIMEOUT} seconds")
        unusable = None
        if kind is NodeKind.TCP and tls is None:
            unusable = ("tls: is required for tcp:// nodes (kabuild never talks to an engine in clear text); "
                        f"add nodes.{name}.tls with ca, cert and key to fleet/nodes.yaml")
        desc = sec.text("description", required=False, default="")
        sec.done()
        engine = _engine_key(kind, parsed)
        if engine in engines:
            sec.fail("url", f"{url!r} is the same engine as node {engines[engine]!r}: one engine, one name (under two "
                            "names both builds would run on one engine while the report names two nodes)")
        engines[engine] = name
        nodes[name] = Node(name, url, kind, tls, desc, ssh, timeout, unusable)
    top.done()
    return Nodes(path, nodes)
