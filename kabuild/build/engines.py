"""Build nodes: connecting to Docker engines (local, ssh, tcp+TLS) and choosing one with fallback.

Every remote step is bounded (README: Remote build nodes):

- connecting: the node's ``connect_timeout`` (ssh ``ConnectTimeout``, TCP/TLS connect);
- the first answer (version, ping, info): ``connect_timeout`` + :data:`PING_TIMEOUT`, so a host
  that accepts a connection and never speaks is "does not answer" (exit 5) in seconds;
- any other API call: :data:`API_TIMEOUT` without a byte from the engine;
- image transfers: :data:`TRANSFER_TIMEOUT` without progress;
- a running build: the manifest's ``build.timeout`` (the watchdog), and a heartbeat that declares
  the node lost after :data:`HEARTBEAT_MISSES` pings in a row go unanswered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import docker
import docker.constants
import docker.errors
import docker.tls
import requests.exceptions

from kabuild.build.transport import SSHAdapter, Tunnels, tls_files_problem, tls_reason
from kabuild.config.nodes import Node, NodeKind, Nodes
from kabuild.errors import ConfigError, ToolError

PING_TIMEOUT = 5  # seconds for the first answer, on top of the connect timeout
API_TIMEOUT = 300  # seconds without an answer on an ordinary API call
TRANSFER_TIMEOUT = 600  # seconds without progress while an image goes to a node
HEARTBEAT_INTERVAL = 15  # seconds between pings while a build runs
HEARTBEAT_MISSES = 3  # unanswered pings in a row that make a node lost


class NodeLost(ToolError):
    """A node stopped answering while kabuild was using it (exit 5)."""


@dataclass
class Engine:
    """A connected build node."""

    node: Node
    client: docker.DockerClient
    arch: str  # the engine's native architecture, as the engine reports it (x86_64, aarch64)
    cpus: int = 1  # CPUs the engine can give a container
    version: str = ""  # the engine's version
    rtt: float = 0.0  # seconds for one ping, measured at connect
    tunnels: Tunnels | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.node.name

    def explain(self, e: BaseException) -> str:
        """Why talking to this engine failed, as one line (ssh's own words summarised)."""
        return explain(self.node, e, self.tunnels)

    def lost(self, e: BaseException, doing: str) -> NodeLost:
        return NodeLost(f"build node {self.name} ({self.node.url}) was lost {doing}: {self.explain(e)}")

    def alive(self, timeout: float = PING_TIMEOUT) -> bool:
        """One ping with a short timeout (the heartbeat while a build runs)."""
        api = self.client.api
        try:
            res = api._get(api._url("/_ping", versioned_api=False), timeout=timeout)
            return res.status_code == 200
        except Exception:  # any failure is "did not answer"; explain() says why later
            return False

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing never matters more than what we were doing
            pass
        if self.tunnels is not None:
            self.tunnels.close()


def _client(node: Node, timeout: float) -> tuple[docker.DockerClient, Tunnels | None]:
    """A client that has not talked to the engine yet (the API version is negotiated in connect)."""
    version = docker.constants.MINIMUM_DOCKER_API_VERSION
    tunnels = None
    if node.kind is NodeKind.SSH:
        # The SDK's own ssh:// support needs paramiko and rewrites the port; ours runs the system
        # ssh. A unix client is built (no connection yet) and its adapter replaced.
        client = docker.DockerClient(base_url="unix:///kabuild-ssh-transport.sock", version=version, timeout=timeout)
        tunnels = Tunnels(node)
        adapter = SSHAdapter(tunnels, timeout)
        old = client.api._custom_adapter
        client.api._custom_adapter = adapter
        client.api.mount("http+docker://", adapter)
        old.close()
    elif node.kind is NodeKind.TCP:
        assert node.tls is not None
        tls = docker.tls.TLSConfig(client_cert=(str(node.tls.cert), str(node.tls.key)),
                                   ca_cert=str(node.tls.ca), verify=str(node.tls.ca))
        client = docker.DockerClient(base_url=node.url.replace("tcp://", "https://"), tls=tls, version=version,
                                     timeout=timeout)
    else:
        client = docker.DockerClient(base_url=node.url, version=version, timeout=timeout)
    # Exactly the files of nodes.yaml: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, proxies and .netrc from
    # the environment never apply to a build node.
    client.api.trust_env = False
    return client, tunnels


def connect(node: Node, *, ping_timeout: int = PING_TIMEOUT) -> Engine:
    """Connect and ping within the node's bounds; ToolError (exit 5) with one line naming why when
    the engine does not answer, ConfigError (exit 2) when the node is configured wrongly."""
    node.usable()
    problem = tls_files_problem(node)
    if problem:
        raise ConfigError(f"build node {node.name} ({node.url}): {problem}")
    client, tunnels = _client(node, node.connect_timeout + ping_timeout)
    try:
        api = client.api
        api._version = min(str(api.version(api_version=False)["ApiVersion"]), docker.constants.DEFAULT_DOCKER_API_VERSION,
                           key=lambda v: tuple(int(x) for x in v.split(".")))
        t0 = time.monotonic()
        client.ping()
        rtt = time.monotonic() - t0
        info = client.info()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError, KeyError,
            ValueError) as e:
        reason = explain(node, e, tunnels)
        client.close()
        if tunnels is not None:
            tunnels.close()
        raise ToolError(f"build node {node.name} ({node.url}) does not answer: {reason}") from None
    client.api.timeout = API_TIMEOUT
    cpus = info.get("NCPU")
    return Engine(node, client, normal_arch(info.get("Architecture", "")),
                  cpus if isinstance(cpus, int) and cpus > 0 else 1, str(info.get("ServerVersion", "")), rtt, tunnels)


def normal_arch(arch: str) -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def explain(node: Node, e: BaseException, tunnels: Tunnels | None = None) -> str:
    """One untruncated line for a failure talking to ``node``: ssh's summarised stderr, the TLS cause,
    or what the connection did."""
    if tunnels is not None:
        said = tunnels.reason()
        if said:
            return said
    if node.kind is NodeKind.TCP:
        cause = tls_reason(node, e)
        if cause:
            return cause
    timeout = node.connect_timeout + PING_TIMEOUT
    if isinstance(e, requests.exceptions.ConnectTimeout):
        return f"no connection within {node.connect_timeout}s (connect_timeout)"
    if isinstance(e, requests.exceptions.ReadTimeout):
        return f"it accepted the connection but sent no answer within {timeout}s"
    text = " ".join(str(e).split())
    low = text.lower()
    if "connection refused" in low:
        return "connection refused (no engine listening there)"
    if "no such file or directory" in low and node.kind is NodeKind.UNIX:
        return f"no socket at {node.url[len('unix://'):]} (is dockerd running?)"
    if "permission denied" in low and node.kind is NodeKind.UNIX:
        return f"permission denied on {node.url[len('unix://'):]} (not in the docker group?)"
    if isinstance(e, requests.exceptions.ConnectionError) and node.kind is NodeKind.SSH:
        return "the ssh connection ended without an answer from the engine"
    return text or type(e).__name__


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
