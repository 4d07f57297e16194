"""A source cache addressed by checksum: fetched once, verified, stored under its hash.

Sources are fetched on the main node only; build containers get the verified bytes
through their build context and never touch the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from kabuild.config.manifest import Source
from kabuild.errors import ChecksumError, ConfigError, ToolError
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


# --------------------------------------------------------------------------- a PKGBUILD's source= entries

# makepkg's checksum arrays (<alg>sums), and the hashlib name of each
SUM_ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "b2")
_HASHLIB = {"md5": "md5", "sha1": "sha1", "sha224": "sha224", "sha256": "sha256", "sha384": "sha384",
            "sha512": "sha512", "b2": "blake2b"}
_VCS = ("bzr", "fossil", "git", "hg", "svn")  # makepkg checks these out: never a file kabuild can verify


@dataclass(frozen=True)
class SourceEntry:
    """One entry of a PKGBUILD's ``source=`` (or ``source_$CARCH=``) array, with its own checksums."""

    array: str  # source or source_<arch>
    index: int
    text: str  # as written: [name::]url-or-file[#fragment]
    sums: tuple[tuple[str, str], ...] = ()  # (algorithm, value) from the PKGBUILD's *sums arrays; value may be SKIP

    @property
    def label(self) -> str:
        return f"{self.array}[{self.index}]"

    @property
    def location(self) -> str:
        return self.text.split("::", 1)[1] if "::" in self.text else self.text

    @property
    def protocol(self) -> str:
        """As makepkg's get_protocol: the URL scheme without a ``+transport`` suffix, ``local`` for a file."""
        if "://" not in self.location:
            return "local"
        return self.location.split("://", 1)[0].split("+", 1)[0]

    @property
    def filename(self) -> str:
        """The name makepkg looks for in the build directory (its get_filename)."""
        name = self.text.split("::", 1)[0].rsplit("/", 1)[-1]
        return name.split("#", 1)[0] if self.protocol in _VCS else name

    def checksum(self, algorithm: str) -> str | None:
        value = dict(self.sums).get(algorithm)
        return value.lower() if value and value != "SKIP" else None


def _hash_of(item: Path | bytes, algorithm: str) -> str:
    h = hashlib.new(_HASHLIB[algorithm])
    if isinstance(item, bytes):
        h.update(item)
    else:
        with open(item, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    return h.hexdigest()


def _verify_entry(entry: SourceEntry, name: str, item: Path | bytes, known: Digest | None, where: str) -> None:
    """makepkg checks every source against the PKGBUILD's sums in the container; check it here first."""
    for algorithm, _value in entry.sums:
        expected = entry.checksum(algorithm)
        if expected is None:
            continue
        if known is not None and algorithm in ("sha256", "b2"):
            actual = known.sha256 if algorithm == "sha256" else known.b2sum
        else:
            actual = _hash_of(item, algorithm)
        if actual != expected:
            raise ChecksumError(f"{where}: {algorithm}sums for {entry.label} ({name}) is {expected}, but the file "
                                f"kabuild stages as {name} has {actual}; makepkg would refuse it")


def _by_checksum(entry: SourceEntry, baseline: Sequence[CachedSource], cache: SourceCache) -> CachedSource | None:
    """A verified file with one of the entry's sha256/b2 sums: a baseline source, else the cache."""
    wanted = {a: v for a in ("sha256", "b2") if (v := entry.checksum(a))}
    for found in baseline:
        if found.digest.sha256 == wanted.get("sha256") or found.digest.b2sum == wanted.get("b2"):
            return found
    for algorithm, value in wanted.items():
        source = Source(entry.location, value if algorithm == "sha256" else None, value if algorithm == "b2" else None)
        slot = cache.slot(source)
        if slot.is_file():
            digest = digest_file(slot)
            if not _mismatch(source, str(slot), digest):
                return CachedSource(source, slot, digest)
    return None


def serve(entries: Sequence[SourceEntry], staged: Mapping[str, Path | bytes], baseline: Sequence[CachedSource],
          cache: SourceCache, *, where: str, pkgbuild_dir: str, manifest: str, host: str) -> dict[str, Path]:
    """The files to add to a build context so that every entry is served offline, by the name makepkg
    expects.  An entry whose file is already staged (next to the PKGBUILD, a baseline source, the
    cumulative patch, kabuild.conf) is checked against the PKGBUILD's sums; any other is found by
    those sums among the baseline sources and the checksum-addressed cache.  What cannot be served
    is a ConfigError (exit 2) naming the entry and how to provide it."""
    extra: dict[str, Path] = {}
    digests = {b.path: b.digest for b in baseline}
    for entry in entries:
        name = entry.filename
        if entry.protocol in _VCS:
            raise ConfigError(f"{where}: {entry.label} {entry.text!r} is a {entry.protocol} checkout; builds are "
                              f"offline and kabuild serves only files it can verify: add a tarball of it to "
                              f"baseline.sources in {manifest} (url and sha256) and name that file in source=")
        if not name or name in (".", ".."):
            raise ConfigError(f"{where}: {entry.label} {entry.text!r} names no file")
        item = staged[name] if name in staged else extra.get(name)
        if item is not None:
            _verify_entry(entry, name, item, digests.get(item) if isinstance(item, Path) else None, where)
            continue
        found = _by_checksum(entry, baseline, cache)
        if found is not None:
            _verify_entry(entry, name, found.path, found.digest, where)
            extra[name] = found.path
            continue
        sums = [a for a in ("sha256", "b2") if entry.checksum(a)]
        looked = (f"no baseline source or cached file has its {' or '.join(f'{a}sums value' for a in sums)}"
                  if sums else "the PKGBUILD gives it no sha256sums or b2sums value to find it by")
        where_from = "the URL" if entry.protocol != "local" else "a file"
        raise ConfigError(f"{where}: {entry.label} {entry.text!r} cannot be served offline (builds have no network): "
                          f"no file {name} in {pkgbuild_dir} or among the baseline sources, and {looked}; add "
                          f"{where_from} to baseline.sources in {manifest} (with its sha256) and run `kabuild fetch "
                          f"{host}`, or put {name} next to the PKGBUILD")
    return extra
