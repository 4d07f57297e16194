"""Streaming hashes and atomic writes: the two file primitives everything else uses."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CHUNK = 1 << 20


@dataclass(frozen=True)
class Digest:
    sha256: str
    b2sum: str  # BLAKE2b-512, as printed by coreutils' b2sum and used in PKGBUILD b2sums=()
    size: int

    def as_dict(self) -> dict:
        return {"sha256": self.sha256, "b2sum": self.b2sum, "size": self.size}


def digest_stream(stream: IO[bytes]) -> Digest:
    sha = hashlib.sha256()
    b2 = hashlib.blake2b()
    size = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        sha.update(chunk)
        b2.update(chunk)
        size += len(chunk)
    return Digest(sha.hexdigest(), b2.hexdigest(), size)


def digest_file(path: Path) -> Digest:
    with open(path, "rb") as f:
        return digest_stream(f)


def digest_bytes(data: bytes) -> Digest:
    return Digest(hashlib.sha256(data).hexdigest(), hashlib.blake2b(data).hexdigest(), len(data))


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, data: bytes | str) -> None:
    if isinstance(data, str):
        data = data.encode()
    with atomic_open(path, "wb") as f:
        f.write(data)


def resolve_path(root: Path, text: str) -> Path:
    """A path from a manifest: ``~`` expanded, relative ones taken from the repository root."""
    p = Path(os.path.expanduser(text))
    return p if p.is_absolute() else (root / p)


def cache_dir(kind: str) -> Path:
    """Where kabuild caches ``kind`` (sources, images): $KABUILD_CACHE/<kind>, else
    $XDG_CACHE_HOME/kabuild/<kind>, else ~/.cache/kabuild/<kind>."""
    env = os.environ.get("KABUILD_CACHE")
    if env:
        return Path(env) / kind
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "kabuild" / kind


def atomic_symlink(target: Path | str, link: Path, *, tag: str | None = None) -> None:
    """Point ``link`` at ``target`` (relative) in one rename: readers see the old or the new link.
    The temporary link is ``.<name>.swap-<tag>`` (default: the pid), so a crash leaves a name that
    cleanup recognises."""
    link = Path(link)
    tmp = link.parent / f".{link.name}.swap-{tag or os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(str(target), tmp)
    os.replace(tmp, link)
