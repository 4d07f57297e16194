"""A source cache addressed by checksum: fetched once, verified, stored under its hash.

Sources are fetched on the main node only; build containers get the verified bytes
through their build context and never touch the network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from kabuild.config.manifest import Source
from kabuild.errors import ChecksumError, ToolError
from kabuild.files import CHUNK, Digest, cache_dir, digest_file


def default_cache_dir() -> Path:
    return cache_dir("sources")


def _mismatch(source: Source, where: str, actual: Digest) -> str | None:
    if source.sha256 and source.sha256 != actual.sha256:
        return f"{where}: sha256 mismatch: expected {source.sha256}, got {actual.sha256}"
    if source.b2sum and source.b2sum != actual.b2sum:
        return f"{where}: b2sum mismatch: expected {source.b2sum}, got {actual.b2sum}"
    return None


def _local_path(url: str, repo_root: Path) -> Path | None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "":
        return repo_root / url
    return None


@dataclass(frozen=True)
class CachedSource:
    source: Source
    path: Path
    digest: Digest


class SourceCache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else default_cache_dir()

    def slot(self, source: Source) -> Path:
        if source.sha256:
            return self.root / "sha256" / source.sha256
        if source.b2sum:
            return self.root / "b2sum" / source.b2sum
        raise ChecksumError(
            f"{source.url}: no sha256 or b2sum in the manifest; kabuild refuses to use an unverified source"
        )

    def lookup(self, source: Source, repo_root: Path) -> CachedSource | None:
        """The verified bytes of ``source`` if they are at hand without the network."""
        slot = self.slot(source)
        local = _local_path(source.url, repo_root)
        for candidate in (local, slot):
            if candidate is not None and candidate.is_file():
                digest = digest_file(candidate)
                problem = _mismatch(source, str(candidate), digest)
                if problem:
                    raise ChecksumError(problem)
                return CachedSource(source, candidate, digest)
        return None

    def fetch(self, source: Source, repo_root: Path,
              progress: Callable[[str], None] = lambda _m: None, timeout: float = 60) -> CachedSource:
        found = self.lookup(source, repo_root)
        if found:
            return found
        slot = self.slot(source)
        errors = []
        for url in (source.url, *source.mirrors):
            local = _local_path(url, repo_root)
            if local is not None and url != source.url:
                if local.is_file():
                    digest = digest_file(local)
                    problem = _mismatch(source, url, digest)
                    if problem:
                        raise ChecksumError(problem)
                    self._store_copy(local, slot)
                    return CachedSource(source, slot, digest)
                errors.append(f"{url}: not found")
                continue
            if local is not None:
                errors.append(f"{url}: not found")
                continue
            progress(f"fetching {url}")
            try:
                digest = self._download(url, slot, source, timeout)
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', e)}")
                continue
            return CachedSource(source, slot, digest)
        raise ToolError(f"cannot fetch {source.filename}: " + "; ".join(errors))

    def _store_copy(self, src: Path, slot: Path) -> None:
        slot.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=slot.parent, prefix=".fetch.")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, slot)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _download(self, url: str, slot: Path, source: Source, timeout: float) -> Digest:
        import hashlib

        slot.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=slot.parent, prefix=".fetch.")
        try:
            sha, b2, size = hashlib.sha256(), hashlib.blake2b(), 0
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    b2.update(chunk)
                    size += len(chunk)
            digest = Digest(sha.hexdigest(), b2.hexdigest(), size)
            problem = _mismatch(source, url, digest)
            if problem:
                raise ChecksumError(problem)
            os.replace(tmp, slot)
            return digest
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
