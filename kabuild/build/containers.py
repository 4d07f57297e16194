"""The one helper that runs a build container: create, put, start, stream, wait, get, remove.

Context goes in and artifacts come out through the Docker API (put_archive /
get_archive), so a remote engine works exactly like the local one and no host
directory is ever bind-mounted.  The container is removed in every case: success,
failure, timeout and Ctrl-C; when its node is lost it cannot be, so every container
carries its owner (machine, process id and start time) and :func:`clear_leftovers`
removes, on the next run, those whose kabuild process is gone.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import docker.errors
import requests.exceptions

from kabuild.build.engines import HEARTBEAT_INTERVAL, HEARTBEAT_MISSES, Engine, NodeLost
from kabuild.errors import ToolError

LABEL = "org.kabuild.build"
OWNER = "org.kabuild.owner"  # "<machine>:<pid>:<process start time>" of the kabuild that made it
RUN = "org.kabuild.run"


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner() -> str:
    """This process as a container label value."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid()) or '?'}"


def owner_alive(value: str) -> bool | None:
    """Whether the kabuild process named by an owner label still runs; None when it ran on another
    machine (or the label is not kabuild's), which this machine cannot tell."""
    parts = value.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return None
    return _start_time(int(parts[1])) == parts[2]


def clear_leftovers(engine: Engine) -> list[str]:
    """Remove the build containers an earlier kabuild on this machine left on ``engine`` when it was
    killed or lost the node; returns them as "name (run id)" for the progress line."""
    try:
        found = engine.client.containers.list(all=True, filters={"label": [LABEL, OWNER]})
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        raise engine.lost(e, "while looking for leftover containers") from None
    removed = []
    for c in found:
        if owner_alive(c.labels.get(OWNER, "")) is False:
            _remove(c)
            removed.append(f"{c.name} (run {c.labels.get(RUN) or 'none'})")
    return removed


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
            labels={LABEL: "1", OWNER: owner(), **dict(config.labels)},
            detach=True,
        )
    except docker.errors.ImageNotFound:
        raise ToolError(f"image {config.image} is not on node {engine.name} (run `kabuild image build`)") from None
    except docker.errors.APIError as e:
        raise ToolError(f"node {engine.name}: cannot create the build container: {e}") from None
    except (requests.exceptions.RequestException, OSError) as e:
        raise engine.lost(e, "before the build container was made") from None

    start = time.monotonic()
    timed_out = threading.Event()
    lost = threading.Event()
    ended = threading.Event()
    stream = None

    def _end_stream() -> None:
        if stream is not None:
            try:
                stream.close()
            except Exception:  # the stream may already be gone with its node
                pass

    def _kill() -> None:
        timed_out.set()
        try:
            container.kill()
        except Exception:  # a lost node cannot kill: end the stream so the build returns
            _end_stream()

    def _heartbeat() -> None:
        misses = 0
        while not ended.wait(HEARTBEAT_INTERVAL):
            misses = 0 if engine.alive() else misses + 1
            if misses >= HEARTBEAT_MISSES:
                lost.set()
                _end_stream()
                return

    watchdog = threading.Timer(timeout, _kill)
    watchdog.daemon = True
    heart = threading.Thread(target=_heartbeat, daemon=True)
    outcome = Outcome(exit_code=-1, duration=0.0, timed_out=False)
    try:
        for path, data in put:
            container.put_archive(path, data)
        container.start()
        watchdog.start()
        heart.start()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            pending = b""
            stream = container.logs(stream=True, follow=True, stdout=True, stderr=True)
            for chunk in stream:
                log.write(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_line(line.decode("utf-8", "replace"))
            if pending:
                on_line(pending.decode("utf-8", "replace"))
        if lost.is_set():
            raise NodeLost(f"build node {engine.name} ({engine.node.url}) was lost during the build: "
                           f"{HEARTBEAT_MISSES} pings in a row went unanswered")
        result = container.wait()
        outcome.exit_code = int(result.get("StatusCode", -1))
        outcome.timed_out = timed_out.is_set()
        if outcome.exit_code == 0 and not outcome.timed_out:
            outcome.files = _copy_out(container, get, into, keep_if)
    except docker.errors.APIError as e:
        raise ToolError(f"node {engine.name}: build container failed: {' '.join(str(e).split())}") from None
    except (requests.exceptions.RequestException, OSError) as e:
        raise engine.lost(e, "during the build") from None
    finally:
        ended.set()
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
    for attempt in range(3):
        try:
            container.remove(force=True, v=True)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            time.sleep(1)
        except (requests.exceptions.RequestException, OSError):
            if attempt:  # the node is gone: the next run on it clears the container (clear_leftovers)
                return
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
    """Every kabuild build container on ``engine``, whoever made it (tests look at these)."""
    return engine.client.containers.list(all=True, filters={"label": LABEL})
