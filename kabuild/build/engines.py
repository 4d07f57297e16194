"""Build nodes: connecting to Docker engines (local, ssh, tcp+TLS) and choosing one with fallback."""

from __future__ import annotations

from dataclasses import dataclass

import docker
import docker.errors
import docker.tls
import requests.exceptions

from kabuild.config.nodes import Node, NodeKind, Nodes
from kabuild.errors import ConfigError, ToolError

PING_TIMEOUT = 5  # seconds: "is this node up at all" must be quick
API_TIMEOUT = 600  # seconds for ordinary API calls (image upload can be slow)


@dataclass
class Engine:
    """A connected build node."""

    node: Node
    client: docker.DockerClient
    arch: str  # the engine's native architecture, as the engine reports it (x86_64, aarch64)
    cpus: int = 1  # CPUs the engine can give a container

    @property
    def name(self) -> str:
        return self.node.name

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing never matters more than what we were doing
            pass


def _client(node: Node, timeout: int) -> docker.DockerClient:
    tls = None
    if node.kind is NodeKind.TCP and node.tls is not None:
        tls = docker.tls.TLSConfig(client_cert=(str(node.tls.cert), str(node.tls.key)),
                                   ca_cert=str(node.tls.ca), verify=True)
    url = node.url.replace("tcp://", "https://") if tls else node.url
    return docker.DockerClient(base_url=url, timeout=timeout, tls=tls,
                               use_ssh_client=node.kind is NodeKind.SSH)


def missing_tls_files(node: Node) -> list[str]:
    """The TLS files of a tcp:// node that are not readable files, as ``tls.<key> <path>``."""
    if node.tls is None:
        return []
    return [f"tls.{key} {path}" for key, path in (("ca", node.tls.ca), ("cert", node.tls.cert), ("key", node.tls.key))
            if not path.is_file()]


def connect(node: Node, *, ping_timeout: int = PING_TIMEOUT) -> Engine:
    """Connect and ping with a short timeout; ToolError (exit 5) when the engine does not answer,
    ConfigError (exit 2) naming them when the node's TLS files are not there."""
    missing = missing_tls_files(node)
    if missing:
        raise ConfigError(f"build node {node.name} ({node.url}): TLS file(s) not found: {', '.join(missing)} "
                          f"(nodes.{node.name}.tls in fleet/nodes.yaml)")
    try:
        client = _client(node, ping_timeout)
        client.ping()
        info = client.info()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as e:
        raise ToolError(f"build node {node.name} ({node.url}) does not answer: {_short(e)}") from None
    client.api.timeout = API_TIMEOUT
    cpus = info.get("NCPU")
    return Engine(node, client, _normal_arch(info.get("Architecture", "")),
                  cpus if isinstance(cpus, int) and cpus > 0 else 1)


def _normal_arch(arch: str) -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[-1][:200] if text else type(e).__name__


@dataclass(frozen=True)
class Selection:
    engine: Engine
    wanted: str  # the node the manifest asked for
    fell_back: bool
    reason: str  # why the fallback was used ("" when it was not)


def select(nodes: Nodes, wanted: str, fallback: str | None) -> Selection:
    """The wanted node if it answers, else the fallback; the caller reports a fallback."""
    try:
        return Selection(connect(nodes.get(wanted)), wanted, False, "")
    except ToolError as first:
        if not fallback or fallback == wanted:
            raise
        try:
            engine = connect(nodes.get(fallback))
        except ToolError as second:
            raise ToolError(f"{first}; fallback {second}") from None
        return Selection(engine, wanted, True, str(first))
