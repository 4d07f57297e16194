"""The one helper that runs a build container: create, put, start, stream, wait, get, remove.

Context goes in and artifacts come out through the Docker API (put_archive /
get_archive), so a remote engine works exactly like the local one and no host
directory is ever bind-mounted.  The container is removed in every case: success,
failure, timeout and Ctrl-C.
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import docker.errors
import requests.exceptions

from kabuild.build.engines import Engine
from kabuild.errors import ToolError

LABEL = "org.kabuild.build"


@dataclass(frozen=True)
class ContainerConfig:
    image: str
    command: tuple[str, ...]
    user: str  # "uid:gid"
    environment: tuple[tuple[str, str], ...]
    hostname: str
    domainname: str = ""
    cpuset: str | None = None
    network: str = "none"
    working_dir: str = "/build"
    labels: tuple[tuple[str, str], ...] = ()


@dataclass
class Outcome:
    exit_code: int
    duration: float
    timed_out: bool
    files: list[Path] = field(default_factory=list)


def run_container(
    engine: Engine,
    config: ContainerConfig,
    *,
    put: tuple[tuple[str, bytes | IO[bytes]], ...],
    get: str,
    into: Path,
    log_path: Path,
    timeout: float,
    on_line: Callable[[str], None] = lambda _l: None,
    keep_if: Callable[[str], bool] = lambda _n: True,
) -> Outcome:
    """Run one container to completion and copy regular files under ``get`` into ``into``."""
    client = engine.client
    try:
        container = client.containers.create(
            config.image,
            command=list(config.command),
            user=config.user,
            environment=dict(config.environment),
            hostname=config.hostname,
            domainname=config.domainname or None,
            cpuset_cpus=config.cpuset,
            network_mode=config.network,
            working_dir=config.working_dir,
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],
            pids_limit=8192,
            labels={LABEL: "1", **dict(config.labels)},
            detach=True,
        )
    except docker.errors.ImageNotFound:
        raise ToolError(f"image {config.image} is not on node {engine.name} (run `kabuild image build`)") from None
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        raise ToolError(f"node {engine.name}: cannot create the build container: {e}") from None

    start = time.monotonic()
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        try:
            container.kill()
        except Exception:
            pass

    watchdog = threading.Timer(timeout, _kill)
    watchdog.daemon = True
    outcome = Outcome(exit_code=-1, duration=0.0, timed_out=False)
    try:
        for path, data in put:
            container.put_archive(path, data)
        container.start()
        watchdog.start()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            pending = b""
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                log.write(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_line(line.decode("utf-8", "replace"))
            if pending:
                on_line(pending.decode("utf-8", "replace"))
        result = container.wait()
        outcome.exit_code = int(result.get("StatusCode", -1))
        outcome.timed_out = timed_out.is_set()
        if outcome.exit_code == 0 and not outcome.timed_out:
            outcome.files = _copy_out(container, get, into, keep_if)
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        raise ToolError(f"node {engine.name}: build container failed: {e}") from None
    finally:
        watchdog.cancel()
        outcome.duration = time.monotonic() - start
        _remove(container)
    return outcome


def _copy_out(container, path: str, into: Path, keep_if: Callable[[str], bool]) -> list[Path]:
    """Stream a directory out of the container; keep regular files only, never follow paths out."""
    stream, _stat = container.get_archive(path)
    into.mkdir(parents=True, exist_ok=True)
    files = []
    with tarfile.open(fileobj=_IterStream(stream), mode="r|") as tf:
        for member in tf:
            name = Path(member.name).name
            if not member.isfile() or not keep_if(name):
                continue
            target = into / name
            src = tf.extractfile(member)
            if src is None:
                continue
            with open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            files.append(target)
    return sorted(files)


def _remove(container) -> None:
    for _ in range(3):
        try:
            container.remove(force=True, v=True)
            return
        except docker.errors.NotFound:
            return
        except (docker.errors.APIError, requests.exceptions.RequestException):
            time.sleep(1)


class _IterStream(io.RawIOBase):
    """A file-like view of the chunk iterator docker's get_archive returns (no full copy in memory)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def leftover_containers(engine: Engine) -> list:
    return engine.client.containers.list(all=True, filters={"label": LABEL})
