"""The build context of one package: its PKGBUILD directory, the cumulative patch and the verified baseline sources, staged in a fixed order and written as a deterministic tar."""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from kabuild.build import kernel
from kabuild.build.spec import (
    CONTEXT_DIR,
    PACKAGE_RE,
    BuildSpec,
    Context,
    StagedFile,
)
from kabuild.config.manifest import Manifest, Package
from kabuild.errors import ChecksumError, ConfigError
from kabuild.files import digest_file
from kabuild.inputs.lock import Lock
from kabuild.inputs.sources import SourceCache

_SKIP = {"src", "pkg", ".git", ".CI"}


def stage(root: Path, manifest: Manifest, package: Package, lock: Lock, cache: SourceCache,
          progress: Callable[[str], None] = lambda _m: None) -> Context:
    """PKGBUILD directory + cumulative patch + verified baseline sources; refuse bad checksums now."""
    if not (package.pkgbuild / "PKGBUILD").is_file():
        raise ConfigError(f"package {package.name}: no PKGBUILD in {package.pkgbuild_display}")
    files: dict[str, Path] = {}
    for path in sorted(package.pkgbuild.iterdir()):
        if path.name in _SKIP or PACKAGE_RE.match(path.name):
            continue
        if path.is_dir():
            for sub in sorted(p for p in path.rglob("*") if p.is_file()):
                files[sub.relative_to(package.pkgbuild).as_posix()] = sub
        elif path.is_file():
            files[path.name] = path
    patch = lock.path.parent / lock.output.file
    files.setdefault(patch.name, patch)
    sources = []
    for source in manifest.baseline.sources:
        found = cache.lookup(source, root) or cache.fetch(source, root, progress)
        sources.append(found)
        name = source.filename
        if name in files and digest_file(files[name]).sha256 != found.digest.sha256:
            raise ChecksumError(f"package {package.name}: {name} in the PKGBUILD directory differs from the "
                                f"verified baseline source ({found.digest.sha256})")
        files[name] = found.path
    deps = pkgbuild_dependencies((package.pkgbuild / "PKGBUILD").read_text(errors="replace"))
    staged = [StagedFile(n, p) for n, p in sorted(files.items())]
    if manifest.kernel is not None:
        staged, deps = kernel.stage_kernel(root, manifest, package, lock, staged, deps, sources)
    return Context(package, tuple(sorted(staged, key=lambda f: f.name)), deps)


def context_tar(ctx: Context, spec: BuildSpec) -> io.BufferedRandom:
    """A deterministic tar of the context (owner = the build user, mtime = SOURCE_DATE_EPOCH)."""
    buf = tempfile.TemporaryFile()
    order = list(reversed(ctx.files)) if spec.reverse_context else list(ctx.files)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        dirs = sorted({str(Path(CONTEXT_DIR, f.name).parent) for f in order} | {CONTEXT_DIR})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            _own(info, spec)
            tf.addfile(info)
        for f in order:
            info = tarfile.TarInfo(f"{CONTEXT_DIR}/{f.name}")
            _own(info, spec)
            if f.data is not None:
                info.size, info.mode = len(f.data), 0o644
                tf.addfile(info, io.BytesIO(f.data))
                continue
            info.size = f.path.stat().st_size
            info.mode = 0o755 if f.path.stat().st_mode & 0o111 else 0o644
            with open(f.path, "rb") as src:
                tf.addfile(info, src)
    buf.seek(0)
    return buf


def _own(info: tarfile.TarInfo, spec: BuildSpec) -> None:
    info.uid, info.gid = spec.user.uid, spec.user.gid
    info.uname, info.gname = spec.user.name, spec.user.name
    info.mtime = spec.source_date_epoch


_ARRAY = re.compile(r"^\s*(depends|makedepends|checkdepends)(?:_[a-z0-9_]+)?\s*=\s*\(([^)]*)\)", re.M)


def pkgbuild_dependencies(text: str) -> tuple[str, ...]:
    """Package names in depends/makedepends/checkdepends arrays, version constraints dropped.

    A plain reading of the text: a PKGBUILD is never executed on the main node.
    """
    out = []
    for _kind, body in _ARRAY.findall(text):
        body = re.sub(r"#.*", "", body)
        for word in re.findall(r"""['"]?([A-Za-z0-9@._+-]+)(?:[<>=][^'"\s]*)?['"]?""", body):
            out.append(word)
    return tuple(sorted(set(out)))
