"""The build context of one package: its PKGBUILD directory, the cumulative patch and the verified baseline
sources (each source= entry under the name makepkg expects), staged in a fixed order and written as a
deterministic tar."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from kabuild.build import kernel, pkgbuild
from kabuild.build.spec import (
    CONTEXT_DIR,
    BuildSpec,
    Context,
    StagedFile,
)
from kabuild.config.manifest import Manifest, Package
from kabuild.errors import ChecksumError, ConfigError
from kabuild.files import digest_file
from kabuild.inputs import recipes
from kabuild.inputs.lock import Lock
from kabuild.inputs.sources import SourceCache, serve


def stage(root: Path, manifest: Manifest, package: Package, lock: Lock, cache: SourceCache,
          progress: Callable[[str], None] = lambda _m: None) -> Context:
    """PKGBUILD directory + cumulative patch + verified baseline sources (+ kabuild.conf and fragments
    for a kernel), read the way makepkg reads it; refuse, before any container exists, bad checksums,
    a recipe for another architecture, a kernel: section on a recipe that is not a kernel, and
    source= entries that cannot be served offline."""
    where = f"{package.pkgbuild_display}/PKGBUILD"
    if not (package.pkgbuild / "PKGBUILD").is_file():
        raise ConfigError(f"package {package.name}: no PKGBUILD in {package.pkgbuild_display}")
    files: dict[str, Path] = recipes.recipe_files(package.pkgbuild)
    recipe_names = set(files)
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
    staged = [StagedFile(n, p) for n, p in sorted(files.items())]
    if manifest.kernel is not None:
        staged = kernel.stage_kernel(root, manifest, package, lock, staged, sources)
    # what the PKGBUILD's top level may read: its own directory and what kabuild generates
    readable = {f.name: (f.data if f.data is not None else f.path) for f in staged
                if f.data is not None or f.name in recipe_names}
    info = pkgbuild.read(readable, where, carch=kernel.image_arch(manifest).value,
                         source_date_epoch=manifest.baseline.source_date_epoch)
    _check_recipe(manifest, package, info, where)
    have = {f.name: (f.data if f.data is not None else f.path) for f in staged}
    extra = serve(info.sources, have, sources, cache, where=where, pkgbuild_dir=package.pkgbuild_display,
                  manifest=manifest.display, host=manifest.host)
    staged += [StagedFile(n, p) for n, p in extra.items()]
    deps = tuple(sorted(set(info.dependencies) | set(kernel.cross_dependencies(manifest))))
    return Context(package, tuple(sorted(staged, key=lambda f: f.name)), deps)


def _check_recipe(manifest: Manifest, package: Package, info: pkgbuild.PkgbuildInfo, where: str) -> None:
    """What makepkg (or a kernel build) would find out only inside the container."""
    target = manifest.arch.value
    if target not in info.arch and "any" not in info.arch:
        raise ConfigError(f"{where}: arch=({' '.join(info.arch)}) does not include {target}, the architecture of "
                          f"host {manifest.host}; makepkg would refuse to build it")
    if manifest.kernel is not None and not info.reads_kabuild_conf:
        raise ConfigError(f"{where}: package {package.name} is not a kernel recipe (its PKGBUILD does not read "
                          f"{kernel.CONF_NAME}), so the kernel: section of {manifest.display} would never be applied; "
                          "remove kernel: or use a kernel recipe such as fleet/pkgbuilds/linux-kabuild")


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
