"""One clean build: an immutable BuildSpec, a staged context, a fresh container, recorded artifacts."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kabuild.build import depnames
from kabuild.build import images
from kabuild.build import kernel
from kabuild.build.containers import ContainerConfig, run_container
from kabuild.errors import BuildError, ChecksumError, ConfigError
from kabuild.files import Digest, atomic_symlink, digest_file
from kabuild.config.manifest import Arch, Manifest, Nodes, Package
from kabuild.build.images import ImageInfo, Recipe
from kabuild.inputs.lock import BuildBlock, BuiltFile, Lock, ReproducedBy, build_dir, require_verified, with_build
from kabuild.build.engines import Engine, Selection, select
from kabuild.inputs.sources import SourceCache
from kabuild.timestamps import utc_now, utc_stamp

BUILD_PATH = "/build"  # fixed: pacman's .BUILDINFO records the build directory
CONTEXT_DIR = "src"
OUT_DIR = f"{BUILD_PATH}/out"
ENTRY = "/usr/local/bin/kabuild-build"
PACKAGE_RE = re.compile(r".+\.pkg\.tar(\.[a-z0-9]+)?$")


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str


BUILDER = User("builder", 1000, 1000, "/home/builder")
ALT_USER = User("kabuild-alt", 2000, 2000, "/home/kabuild-alt")


@dataclass(frozen=True)
class BuildSpec:
    """Everything that defines one build; variations are pure transforms of this value."""

    host: str
    package: str
    arch: Arch
    image: str  # tag, named by recipe content hash
    source_date_epoch: int
    timeout: int
    hostname: str = "kabuild-build"
    domainname: str = "kabuild.internal"
    timezone: str = "UTC"
    locale: str = "C.UTF-8"
    umask: str = "0022"
    user: User = BUILDER
    home: str | None = None  # None: the user's home
    cpus: int = 1  # CPUs this build uses (MAKEFLAGS=-jN); the control build uses every CPU of its node
    node_cpus: int = 1  # CPUs of the node the build runs on: fewer than that means a cpuset
    vary_cpus: int = 1  # what the cpus variation gives the experiment (see variations.experiment_cpus)
    faketime: str | None = None
    extra_env: tuple[tuple[str, str], ...] = ()
    reverse_context: bool = False  # write the build context in reverse order
    run_id: str = ""  # container label only: lets an interrupted run find its containers

    def environment(self) -> tuple[tuple[str, str], ...]:
        env = [
            ("SOURCE_DATE_EPOCH", str(self.source_date_epoch)),
            ("TZ", self.timezone),
            # LANG, never LC_ALL: makepkg sorts the package's members with LC_COLLATE=C, which
            # LC_ALL would override, so a locale given as LC_ALL reorders every package whose
            # names collate differently (seen with the kernel headers) though the build is fine.
            ("LANG", self.locale),
            ("KABUILD_UMASK", self.umask),
            ("HOME", self.home or self.user.home),
            ("USER", self.user.name),
            ("LOGNAME", self.user.name),
        ]
        env.append(("MAKEFLAGS", f"-j{self.cpus}"))
        if self.faketime:
            env.append(("KABUILD_FAKETIME", self.faketime))
        env.extend(self.extra_env)
        return tuple(env)

    def container(self, label: str) -> ContainerConfig:
        return ContainerConfig(
            image=self.image,
            command=(ENTRY,),
            user=f"{self.user.uid}:{self.user.gid}",
            environment=self.environment(),
            hostname=self.hostname,
            domainname=self.domainname,
            cpuset=None if self.cpus >= self.node_cpus else (f"0-{self.cpus - 1}" if self.cpus > 1 else "0"),
            labels=(("org.kabuild.host", self.host), ("org.kabuild.package", self.package),
                    ("org.kabuild.role", label), ("org.kabuild.run", self.run_id)),
        )


@dataclass(frozen=True)
class Artifact:
    name: str
    path: Path
    digest: Digest


@dataclass(frozen=True)
class BuildResult:
    spec: BuildSpec
    node: str
    image: ImageInfo
    artifacts: tuple[Artifact, ...]
    log: Path
    duration: float


# --------------------------------------------------------------------------- staging


@dataclass(frozen=True)
class StagedFile:
    name: str
    path: Path
    data: bytes | None = None  # generated content (kabuild.conf); None: the bytes of ``path``


@dataclass(frozen=True)
class Context:
    """The files of one build context, all verified, in a fixed order."""

    package: Package
    files: tuple[StagedFile, ...]
    dependencies: tuple[str, ...] = ()  # depends + makedepends names, installed in a separate image layer


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


# --------------------------------------------------------------------------- running


# The entry script's own exit codes (containers/common/kabuild-build); anything else is makepkg's.
ENTRY_CONTRACT_ERROR = 100  # refused before makepkg ran (SOURCE_DATE_EPOCH, umask, no PKGBUILD, /build/out)
ENTRY_NO_PACKAGE = 101  # makepkg succeeded but no package file landed in /build/out
_CONTRACT_MARK = "==> kabuild: failed contract: "


def _contract_reason(tail: list[str]) -> str:
    """The entry script's own reason, from its '==> kabuild: failed contract: <reason>' marker."""
    for line in reversed(tail):
        if line.strip().startswith(_CONTRACT_MARK):
            return line.strip()[len(_CONTRACT_MARK):]
    return "no reason in the log"


def run_build(engine: Engine, image: ImageInfo, spec: BuildSpec, ctx: Context, out_dir: Path,
              label: str, progress: Callable[[str], None]) -> BuildResult:
    """Run makepkg in a fresh container; BuildError (exit 4) with the log tail on failure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"{spec.package}.log"
    started = time.monotonic()
    tail: list[str] = []

    def on_line(line: str) -> None:
        tail.append(line)
        del tail[:-20]
        if line.startswith("==>") or line.startswith("  ->") and "rror" in line:
            elapsed = int(time.monotonic() - started)
            progress(f"[{label} {engine.name} {elapsed // 60:02d}:{elapsed % 60:02d}] {line.strip()}")

    with context_tar(ctx, spec) as tar:
        outcome = run_container(
            engine, spec.container(label), put=((BUILD_PATH, tar),), get=OUT_DIR, into=out_dir,
            log_path=log, timeout=spec.timeout, on_line=on_line, keep_if=lambda n: bool(PACKAGE_RE.match(n)),
        )
    if outcome.timed_out:
        raise BuildError(f"{label}: {spec.package} on {engine.name} timed out after {spec.timeout}s; log: {log}")
    if outcome.exit_code == ENTRY_CONTRACT_ERROR:
        # the entry script refused before makepkg ran: kabuild or the image broke the contract
        raise BuildError(f"{label}: the build container of {spec.package} on {engine.name} refused to start makepkg "
                        f"(kabuild-build contract error, exit {ENTRY_CONTRACT_ERROR}): {_contract_reason(tail)}; "
                        f"kabuild and image {spec.image} disagree about the build contract; "
                        f"log: {log}")
    if outcome.exit_code == ENTRY_NO_PACKAGE:
        raise BuildError(f"{label}: makepkg of {spec.package} on {engine.name} succeeded but wrote no package file "
                         f"(kabuild-build exit {ENTRY_NO_PACKAGE}: does the PKGBUILD's package() produce one, and is "
                         f"PKGDEST left alone?); log: {log}")
    if outcome.exit_code != 0:
        last = " | ".join(line.strip() for line in tail[-5:] if line.strip())
        raise BuildError(f"{label}: makepkg of {spec.package} failed on {engine.name} (exit {outcome.exit_code}): "
                         f"{last}; full log: {log}")
    if not outcome.files:
        raise BuildError(f"{label}: {spec.package} on {engine.name} produced no package; log: {log}")
    artifacts = tuple(Artifact(p.name, p, digest_file(p)) for p in outcome.files)
    return BuildResult(spec, engine.name, image, artifacts, log, outcome.duration)


# --------------------------------------------------------------------------- a host's build
#
# `kabuild build` (one node) and `kabuild reproduce` (two nodes) share these steps.


@dataclass(frozen=True)
class Prepared:
    """A host ready to build anywhere: lock verified, every source verified, contexts staged."""

    manifest: Manifest
    lock: Lock
    contexts: tuple[Context, ...]
    recipe: Recipe


def prepare(root: Path, manifest: Manifest, progress: Callable[[str], None]) -> Prepared:
    """Everything that can be refused before any container exists (exit 2/3)."""
    lock = require_verified(root, manifest)
    cache = SourceCache()
    contexts = tuple(stage(root, manifest, p, lock, cache, progress) for p in manifest.packages)
    # Arch dependency names -> the flavor's packages; an unmapped name is refused here (exit 2)
    contexts = tuple(dataclasses.replace(c, dependencies=depnames.for_flavor(
        root, manifest.build.flavor, c.package.name, c.dependencies)) for c in contexts)
    return Prepared(manifest, lock, contexts, images.recipe(root, manifest.build.flavor, kernel.image_arch(manifest)))


def ready_image(root: Path, engine: Engine, prepared: Prepared, progress: Callable[[str], None]) -> ImageInfo:
    """The recipe's image on ``engine`` (built or imported once), able to run there."""
    image = images.ensure(root, engine, prepared.recipe, progress)
    images.check_emulation(engine, image, prepared.recipe.arch)
    return image


def package_image(engine: Engine, image: ImageInfo, prepared: Prepared, ctx: Context,
                  progress: Callable[[str], None]) -> ImageInfo:
    """The image plus the package's build dependencies (a cached layer)."""
    return images.with_dependencies(engine, image, prepared.manifest.build.flavor, ctx.dependencies, progress)


def base_spec(manifest: Manifest, package: Package, image: ImageInfo, node_cpus: int = 1) -> BuildSpec:
    return BuildSpec(
        host=manifest.host,
        package=package.name,
        arch=manifest.arch,
        image=image.tag,
        source_date_epoch=manifest.baseline.source_date_epoch,
        timeout=manifest.build.timeout,
        cpus=node_cpus,
        node_cpus=node_cpus,
        vary_cpus=node_cpus,
    )


def build_block(results: list[BuildResult], selection: Selection, image: ImageInfo, built_at: str,
                reproduce: ReproducedBy | None = None) -> BuildBlock:
    return BuildBlock(
        built_at=built_at, node=selection.engine.name, requested_node=selection.wanted,
        fell_back=selection.fell_back, image=image.record(),
        packages=tuple(BuiltFile(a.name, a.digest, r.spec.package, r.image.tag) for r in results for a in r.artifacts),
        reproduce=reproduce,
    )


@dataclass(frozen=True)
class HostBuild:
    results: tuple[BuildResult, ...]
    directory: Path  # build/<host>/<ref>/builds/<stamp>, also linked as last-build
    block: BuildBlock
    lock: Lock


def build_host(root: Path, manifest: Manifest, nodes: Nodes, node: str | None,
               progress: Callable[[str], None]) -> HostBuild:
    """One clean build of every package on one node; recorded in the lock's build: block."""
    prepared = prepare(root, manifest, progress)
    wanted = node or manifest.build.nodes.control
    sel = select(nodes, wanted, None if node else manifest.build.nodes.fallback)
    if sel.fell_back:
        progress(f"node {wanted} is unreachable ({sel.reason}); using fallback node {sel.engine.name}")
    engine = sel.engine
    bdir = build_dir(root, manifest)
    # Every build gets its own directory (logs of failed builds stay where the error says);
    # last-build points at the latest successful one.
    out = bdir / "builds" / f"{utc_stamp()}-{os.getpid()}"
    try:
        image = ready_image(root, engine, prepared, progress)
        results = []
        for ctx in prepared.contexts:
            pkg_image = package_image(engine, image, prepared, ctx, progress)
            spec = base_spec(manifest, ctx.package, pkg_image, engine.cpus)
            progress(f"building {ctx.package.name} for {manifest.arch} on node {engine.name} "
                     f"({pkg_image.tag}, {spec.cpus} CPU(s))")
            results.append(run_build(engine, pkg_image, spec, ctx, out, "build", progress))
        atomic_symlink(out.relative_to(bdir), bdir / "last-build")
    finally:
        engine.close()
    block = build_block(results, sel, image, utc_now())
    return HostBuild(tuple(results), bdir / "last-build", block, with_build(prepared.lock, block))
