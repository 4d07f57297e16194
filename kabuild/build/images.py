"""Build images: recipes hashed by content, built on the main node, imported or shipped to nodes.

An image is named by its recipe: ``kabuild/<flavor>-<arch>:<hash16>`` where the hash
covers every file of ``containers/common/`` and ``containers/<flavor>/`` plus the
architecture.  What is inside (the package list, i.e. the toolchain) is recorded as
an image label and as a sidecar file, so reports can say which toolchain built what.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import requests.exceptions

from kabuild import files, tools
from kabuild.build import rootfs
from kabuild.build.containers import LABEL, OWNER, owner
from kabuild.build.engines import TRANSFER_TIMEOUT, Engine
from kabuild.config.document import ImageRecord
from kabuild.config.manifest import Arch, Flavor
from kabuild.config.nodes import Nodes
from kabuild.errors import BuildError, ConfigError, ToolError
from kabuild.process import run

LABEL_RECIPE = "org.kabuild.recipe"
LABEL_FLAVOR = "org.kabuild.flavor"
LABEL_ARCH = "org.kabuild.arch"
LABEL_PACKAGES = "org.kabuild.packages"
LABEL_DEPS = "org.kabuild.dependencies"
BUILD_TIMEOUT = 3600
SHIP_PROGRESS = 10  # seconds between progress lines while an image is shipped
NAME_MAP = "arch-names"  # containers/<flavor>/arch-names: not part of the image identity (see depnames.py)


@dataclass(frozen=True)
class Recipe:
    flavor: Flavor
    arch: Arch
    directory: Path
    hash: str  # sha256 over the recipe files and the architecture

    @property
    def tag(self) -> str:
        return f"kabuild/{self.flavor}-{self.arch}:{self.hash[:16]}"

    @property
    def repository(self) -> str:
        return self.tag.rsplit(":", 1)[0]


@dataclass(frozen=True)
class ImageInfo:
    tag: str
    id: str
    recipe_hash: str
    flavor: str
    arch: str
    packages: tuple[str, ...]  # "name version" of everything in the image: the toolchain

    def record(self) -> ImageRecord:
        return ImageRecord(self.tag, self.id, self.recipe_hash, self.flavor, self.arch)


def recipe(root: Path, flavor: Flavor, arch: Arch) -> Recipe:
    base = root / "containers"
    directory = base / flavor.value
    if not directory.is_dir():
        raise ConfigError(f"no image recipe for flavor {flavor} (expected {directory})")
    h = hashlib.sha256()
    h.update(f"arch={arch.value}\n".encode())
    for d in (base / "common", directory):
        # the Arch-name map only feeds the dependency layer, which is keyed by the mapped names
        for path in sorted(p for p in d.rglob("*") if p.is_file() and p.name != NAME_MAP):
            rel = path.relative_to(base).as_posix()
            h.update(f"{rel}\0{len(rel)}\0".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return Recipe(flavor, arch, directory, h.hexdigest())


def unbuildable(root: Path, flavor: Flavor) -> str | None:
    """Why the flavor's image cannot be built from this repository at all, or None."""
    if flavor is not Flavor.ARCHLINUXARM:
        return None
    return rootfs.pinning_problem(root)


def cache_dir() -> Path:
    return files.cache_dir("images")


def _rootfs_paths(r: Recipe) -> tuple[Path, Path]:
    stem = cache_dir() / f"{r.flavor}-{r.arch}-{r.hash[:16]}"
    return Path(f"{stem}.tar"), Path(f"{stem}.packages.txt")


def inspect(engine: Engine, r: Recipe) -> ImageInfo | None:
    try:
        image = engine.client.images.get(r.tag)
    except docker.errors.ImageNotFound:
        return None
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        raise ToolError(f"node {engine.name}: cannot inspect {r.tag}: {e}") from None
    return _info(image, r.tag)


def _info(image, tag: str) -> ImageInfo:
    labels = image.labels or {}
    packages = tuple(p.replace("=", " ", 1) for p in labels.get(LABEL_PACKAGES, "").split(",") if p)
    return ImageInfo(tag, image.id, labels.get(LABEL_RECIPE, ""), labels.get(LABEL_FLAVOR, ""),
                     labels.get(LABEL_ARCH, ""), packages)


def build_rootfs(root: Path, r: Recipe, progress: Callable[[str], None]) -> tuple[Path, Path]:
    """Make the flavor's root filesystem tar on the main node (cached by recipe hash)."""
    tar, packages = _rootfs_paths(r)
    if tar.is_file() and packages.is_file():
        return tar, packages
    if r.flavor is not Flavor.DEBIAN:
        script = r.directory / "mkimage.sh"
        raise ToolError(
            f"the {r.flavor} image is built by {script.relative_to(root)}, which needs the official "
            "Arch Linux ARM root tarball (pinned checksum) and network access to its mirrors; "
            "build it there and `kabuild image ship` it, or use flavor debian"
        )
    tools.find("mmdebstrap")
    if os.geteuid() != 0:
        raise ToolError("building the debian image needs root (mmdebstrap); run `make setup` or sudo")
    tar.parent.mkdir(parents=True, exist_ok=True)
    tmp = tar.with_name(tar.name[: -len(".tar")] + ".partial.tar")
    tmp_packages = tmp.with_name(tmp.name[: -len(".tar")] + ".packages.txt")  # what mkrootfs.sh writes
    progress(f"building the {r.flavor} {r.arch} root filesystem with mmdebstrap (a few minutes, once per recipe)")
    try:
        run(["bash", str(r.directory / "mkrootfs.sh"), r.arch.debian, str(tmp)], timeout=BUILD_TIMEOUT,
            env={"TMPDIR": str(tar.parent)})
        os.replace(tmp_packages, packages)
        os.replace(tmp, tar)
    finally:
        for leftover in (tmp, tmp_packages):
            leftover.unlink(missing_ok=True)
    return tar, packages


def import_rootfs(engine: Engine, r: Recipe, tar: Path, packages_file: Path,
                  progress: Callable[[str], None]) -> ImageInfo:
    packages = [line.split(None, 1) for line in packages_file.read_text().splitlines() if line.strip()]
    label_packages = ",".join(f"{p[0]}={p[1] if len(p) > 1 else ''}" for p in packages)
    changes = [
        "USER 1000:1000",
        "WORKDIR /build",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["/usr/local/bin/kabuild-build"]',
        f"LABEL {LABEL_RECIPE}={r.hash} {LABEL_FLAVOR}={r.flavor} {LABEL_ARCH}={r.arch}",
        f'LABEL {LABEL_PACKAGES}="{label_packages}"',
    ]
    progress(f"importing {r.tag} into node {engine.name} ({tar.stat().st_size // (1 << 20)} MiB)")
    api = engine.client.api
    params = {"fromSrc": "-", "repo": r.repository, "tag": r.tag.rsplit(":", 1)[1],
              "platform": r.arch.docker_platform, "changes": changes}
    try:
        with open(tar, "rb") as f:
            res = api._post(api._url("/images/create"), params=params, data=f,
                            headers={"Content-Type": "application/tar"}, timeout=BUILD_TIMEOUT)
        api._raise_for_status(res)
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        raise ToolError(f"node {engine.name}: importing {r.tag} failed: {e}") from None
    info = inspect(engine, r)
    if info is None:
        raise ToolError(f"node {engine.name}: {r.tag} missing right after import")
    return info


def ensure(root: Path, engine: Engine, r: Recipe, progress: Callable[[str], None]) -> ImageInfo:
    """The recipe's image on ``engine``: already there, imported from the cached rootfs, or built."""
    info = inspect(engine, r)
    if info is not None:
        return info
    tar, packages = build_rootfs(root, r, progress)
    return import_rootfs(engine, r, tar, packages, progress)


def ship(src: Engine, dst: Engine, info: ImageInfo, progress: Callable[[str], None]) -> ImageInfo:
    """The image ``info`` (on ``src``) onto ``dst`` with save/load, no registry: once per image ID.

    The image ID is the digest of the image's configuration, so the same ID on both engines is the
    same image, byte for byte; a tag on ``dst`` that names another image is moved to this one."""
    try:
        there = dst.client.images.get(info.id)
    except docker.errors.ImageNotFound:
        there = None
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        raise dst.lost(e, f"while looking for {info.tag}") from None
    if there is not None:
        if info.tag not in (there.tags or []):
            repo, tag = info.tag.rsplit(":", 1)
            there.tag(repo, tag)
        progress(f"{info.tag} ({info.id[7:19]}) is already on node {dst.name}")
        return info
    try:
        size = int(src.client.images.get(info.id).attrs.get("Size") or 0)
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        raise src.lost(e, f"while reading {info.tag}") from None
    progress(f"shipping {info.tag} ({info.id[7:19]}, {size >> 20} MiB) from {src.name} to {dst.name}")
    started = time.monotonic()
    sent = [0]
    said = [started]

    def chunks():
        for chunk in src.client.api.get_image(info.tag):
            sent[0] += len(chunk)
            now = time.monotonic()
            if now - said[0] >= SHIP_PROGRESS:
                said[0] = now
                share = f" ({100 * sent[0] // size}%)" if size else ""
                progress(f"shipping {info.tag} to {dst.name}: {sent[0] >> 20} of {size >> 20} MiB{share}, "
                         f"{int(now - started)}s")
            yield chunk

    saved = src.client.api.timeout, dst.client.api.timeout
    src.client.api.timeout = dst.client.api.timeout = TRANSFER_TIMEOUT
    try:
        dst.client.api.load_image(chunks())
    except (docker.errors.APIError, docker.errors.ImageLoadError) as e:
        raise ToolError(f"shipping {info.tag} to {dst.name} failed: {' '.join(str(e).split())}") from None
    except (requests.exceptions.RequestException, OSError) as e:
        raise dst.lost(e, f"while {info.tag} was shipped to it") from None
    finally:
        src.client.api.timeout, dst.client.api.timeout = saved
    try:
        loaded = dst.client.images.get(info.tag)
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        raise ToolError(f"node {dst.name}: {info.tag} missing right after load ({e})") from None
    if loaded.id != info.id:
        raise ToolError(f"node {dst.name}: {info.tag} is {loaded.id} after load, not {info.id}")
    progress(f"{info.tag} is on {dst.name} ({sent[0] >> 20} MiB in {time.monotonic() - started:.0f}s)")
    return info


def check_emulation(engine: Engine, info: ImageInfo, arch: Arch) -> None:
    """A foreign-architecture image must actually run on the node (qemu-user-static binfmt, flag F)."""
    if engine.arch == arch.value:
        return
    try:
        engine.client.containers.run(info.tag, ["/bin/true"], network_mode="none", remove=True, user="1000:1000")
    except (docker.errors.ContainerError, docker.errors.APIError) as e:
        detail = " ".join(str(e).split())
        if isinstance(e, docker.errors.ContainerError) or "exec format error" in detail:
            raise ToolError(_emulation_message(engine, arch, detail)) from None
        # not the architecture: the engine itself failed to run a container; say so, whole
        raise ToolError(f"node {engine.name}: a test container of {info.tag} did not run: {detail}") from None
    except (requests.exceptions.RequestException, OSError) as e:
        raise engine.lost(e, f"while it ran a test container of {info.tag}") from None


def _emulation_message(engine: Engine, arch: Arch, detail: str) -> str:
    return (f"node {engine.name} is {engine.arch} and cannot run {arch} containers ({detail.strip()[:200]}); "
            f"enable emulation there: apt-get install qemu-user-static binfmt-support && "
            f"update-binfmts --enable qemu-{arch} (containers/host-setup.sh binfmt does this)")


# --------------------------------------------------------------------------- dependency layers

DEPS_TIMEOUT = 1800
_DEP_NAME = re.compile(r"[A-Za-z0-9@._+-]+")
_PACKAGES_MARK = "KABUILD-PACKAGES:"


def dependencies_tag(base: ImageInfo, deps: tuple[str, ...]) -> str:
    """The layer's tag: keyed by the base image itself (its ID) and the dependency set.  The layer is
    made once, on the control node, and shipped: both builds use the same toolchain."""
    key = hashlib.sha256((base.recipe_hash + "\n" + base.id + "\n" + "\n".join(sorted(set(deps)))).encode()
                         ).hexdigest()[:16]
    return f"{base.tag.rsplit(':', 1)[0]}:deps-{key}"


def _install_command(flavor: Flavor, deps: tuple[str, ...]) -> list[str]:
    names = " ".join(shlex.quote(d) for d in deps)
    if flavor is Flavor.DEBIAN:
        # The debian flavor resolves PKGBUILD dependency names as Debian package names:
        # only names both distributions share (bc, cpio, perl, ...) can work here.
        script = (f"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                  f"--no-install-recommends {names} && apt-get clean && rm -rf /var/lib/apt/lists/* && "
                  f"printf '{_PACKAGES_MARK}' && dpkg-query -W -f '${{Package}}=${{Version}},'")
    else:
        script = (f"pacman -Sy --noconfirm --needed {names} && pacman -Scc --noconfirm >/dev/null && "
                  f"printf '{_PACKAGES_MARK}' && pacman -Q | tr ' \\n' '=,'")
    return ["/bin/sh", "-c", script]


def with_dependencies(engine: Engine, base: ImageInfo, flavor: Flavor, deps: tuple[str, ...],
                      progress: Callable[[str], None]) -> ImageInfo:
    """The base image plus ``deps``, installed once in a step that may use the network
    (distribution mirrors only) and kept as an image layer keyed by the dependency set,
    so that the build itself always runs with network none."""
    if not deps:
        return base
    bad = [d for d in deps if not _DEP_NAME.fullmatch(d)]
    if bad:
        raise ConfigError(f"invalid dependency name(s) in PKGBUILD: {', '.join(bad)}")
    tag = dependencies_tag(base, deps)
    try:
        return _info(engine.client.images.get(tag), tag)
    except docker.errors.ImageNotFound:
        pass
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        raise ToolError(f"node {engine.name}: cannot inspect {tag}: {e}") from None
    progress(f"installing build dependencies {', '.join(deps)} into a layer of {base.tag} on {engine.name} "
             "(network on for this step only)")
    try:
        container = engine.client.containers.create(
            base.tag, _install_command(flavor, deps), user="0:0", network_mode="host",
            labels={LABEL: "1", OWNER: owner(), "org.kabuild.role": "dependencies"}, detach=True)
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        raise ToolError(f"node {engine.name}: cannot create the dependency container: {e}") from None
    try:
        container.start()
        result = container.wait(timeout=DEPS_TIMEOUT)
        output = container.logs().decode("utf-8", "replace")
        if result.get("StatusCode") != 0 or _PACKAGES_MARK not in output:
            tail = " | ".join(line for line in output.strip().splitlines()[-4:])
            raise BuildError(f"installing build dependencies {', '.join(deps)} on {engine.name} failed "
                             f"(exit {result.get('StatusCode')}): {tail}")
        packages = output.rsplit(_PACKAGES_MARK, 1)[1].strip().strip(",")
        labels = dict(base_labels(engine, base))
        labels.update({LABEL_PACKAGES: packages, LABEL_DEPS: ",".join(deps)})
        repo, tag_name = tag.rsplit(":", 1)
        container.commit(repository=repo, tag=tag_name, changes=["USER 1000:1000"],
                         conf={"Labels": labels, "User": "1000:1000"})
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        raise ToolError(f"node {engine.name}: dependency layer failed: {e}") from None
    finally:
        try:
            container.remove(force=True)
        except Exception:
            pass
    return _info(engine.client.images.get(tag), tag)


def base_labels(engine: Engine, info: ImageInfo) -> dict:
    return engine.client.images.get(info.tag).labels or {}


# --------------------------------------------------------------------------- the image verbs


def build_on(root: Path, nodes: Nodes, node: str, flavor: Flavor, arch: Arch,
             progress: Callable[[str], None]) -> ImageInfo:
    """`kabuild image build`: the recipe's image on ``node``, built or imported once."""
    from kabuild.build.engines import connect

    r = recipe(root, flavor, arch)
    engine = connect(nodes.get(node))
    try:
        return ensure(root, engine, r, progress)
    finally:
        engine.close()


def ship_between(root: Path, nodes: Nodes, source: str, node: str, flavor: Flavor, arch: Arch,
                 progress: Callable[[str], None]) -> ImageInfo:
    """`kabuild image ship`: the recipe's image from ``source`` to ``node`` without a registry."""
    from kabuild.build.engines import connect

    r = recipe(root, flavor, arch)
    src = connect(nodes.get(source))
    try:
        info = inspect(src, r)
        if info is None:
            raise ToolError(f"{r.tag} is not on node {source} either; run `kabuild image build --node {source}` first")
        dst = connect(nodes.get(node))
        try:
            return ship(src, dst, info, progress)
        finally:
            dst.close()
    finally:
        src.close()
