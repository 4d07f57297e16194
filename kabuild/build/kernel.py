"""Kernel hosts: what kabuild hands a shared kernel recipe (fleet/pkgbuilds/linux-kabuild).

A manifest with a ``kernel:`` section gets, next to its PKGBUILD in the build context,
a generated ``kabuild.conf`` (shell key=value lines the PKGBUILD sources) and its config
fragments.  The recipe stays one file for every board: the board, the cumulative patch,
the kconfig target, the fragments and the cross compiler all come from here.
"""

from __future__ import annotations

import platform
import shlex
from pathlib import Path

from kabuild.build.spec import StagedFile
from kabuild.config.manifest import Arch, Manifest, Package
from kabuild.errors import ChecksumError, ConfigError
from kabuild.files import digest_file
from kabuild.inputs.lock import Lock
from kabuild.inputs.sources import CachedSource

CONF_NAME = "kabuild.conf"
KERNEL_ARCH = {Arch.X86_64: "x86_64", Arch.AARCH64: "arm64"}  # the kernel's ARCH= for each target
KERNEL_ARCH_DIR = {Arch.X86_64: "x86", Arch.AARCH64: "arm64"}  # its directory under arch/
BOOT_IMAGE = {Arch.X86_64: "arch/x86/boot/bzImage", Arch.AARCH64: "arch/arm64/boot/Image"}


def node_arch() -> Arch:
    """The architecture of this machine (where cross builds run: the nodes are like the main node)."""
    machine = platform.machine()
    try:
        return Arch(machine if machine != "arm64" else "aarch64")
    except ValueError:
        raise ConfigError(f"this machine's architecture {machine!r} has no build image") from None


def image_arch(manifest: Manifest) -> Arch:
    """A cross build runs in an image of the node's architecture; otherwise the target's."""
    return node_arch() if manifest.build.cross else manifest.arch


def cross_prefix(manifest: Manifest) -> str:
    """CROSS_COMPILE for the recipe: empty when the node builds its own architecture."""
    if not manifest.build.cross or image_arch(manifest) is manifest.arch:
        return ""
    return f"{manifest.arch.value}-linux-gnu-"


def cross_dependencies(manifest: Manifest) -> tuple[str, ...]:
    """Arch names of the cross toolchain a cross build needs (mapped per flavor like any other)."""
    prefix = cross_prefix(manifest)
    return (f"{prefix}gcc", f"{prefix}binutils") if prefix else ()


def conf_text(manifest: Manifest, package: Package, lock: Lock, baseline: CachedSource,
              fragments: list[tuple[str, str]]) -> str:
    """The kabuild.conf the recipe sources: shell assignments, quoted, in a fixed order."""
    assert manifest.kernel is not None
    q = shlex.quote

    def array(values: list[str]) -> str:
        return "(" + " ".join(q(v) for v in values) + ")"

    lines = [
        "# written by kabuild for one build of this recipe; sourced by the PKGBUILD",
        f"KABUILD_HOST={q(manifest.host)}",
        f"KABUILD_PKGBASE={q(package.name)}",
        f"KABUILD_PKGVER={q(manifest.baseline.version.replace('-', '_'))}",
        f"KABUILD_SRCDIR={q(manifest.baseline.name + '-' + manifest.baseline.version)}",
        f"KABUILD_SOURCE={q(baseline.source.filename)}",
        f"KABUILD_SOURCE_B2SUM={q(baseline.digest.b2sum)}",
        f"KABUILD_PATCH={q(lock.output.file)}",
        f"KABUILD_PATCH_B2SUM={q(lock.output.digest.b2sum)}",
        f"KABUILD_KCONFIG={q(manifest.kernel.config)}",
        f"KABUILD_FRAGMENTS={array([name for name, _ in fragments])}",
        f"KABUILD_FRAGMENT_B2SUMS={array([b2 for _, b2 in fragments])}",
        f"KABUILD_DTBS={array(list(manifest.kernel.dtbs))}",
        f"KABUILD_TARGET_ARCH={q(manifest.arch.value)}",
        f"KABUILD_KARCH={q(KERNEL_ARCH[manifest.arch])}",
        f"KABUILD_KARCH_DIR={q(KERNEL_ARCH_DIR[manifest.arch])}",
        f"KABUILD_BOOT_IMAGE={q(BOOT_IMAGE[manifest.arch])}",
        f"KABUILD_CROSS_COMPILE={q(cross_prefix(manifest))}",
    ]
    return "\n".join(lines) + "\n"


def stage_kernel(root: Path, manifest: Manifest, package: Package, lock: Lock, staged: list[StagedFile],
                 sources: list[CachedSource]) -> list[StagedFile]:
    """Add kabuild.conf and the fragments to a kernel package's context (the cross toolchain is added
    to its dependencies by :func:`cross_dependencies`)."""
    assert manifest.kernel is not None
    taken = {f.name for f in staged}
    out = list(staged)
    fragments = []
    for rel in manifest.kernel.fragments:
        path = root / rel
        name = Path(rel).name
        if name in taken or name == CONF_NAME:
            raise ConfigError(f"package {package.name}: kernel fragment {rel} has the same name as a file "
                              f"of the build context ({name}); rename it")
        if not path.is_file():
            raise ConfigError(f"package {package.name}: kernel fragment {rel} does not exist")
        digest = digest_file(path)
        pinned = {i.path: i for i in lock.promoted.inputs}.get(rel)
        if pinned is None or pinned.sha256 != digest.sha256:
            raise ChecksumError(f"kernel fragment {rel} is not the one manifest.lock records; "
                                f"run `kabuild promote {manifest.host}`")
        out.append(StagedFile(name, path))
        fragments.append((name, digest.b2sum))
    if CONF_NAME in taken:
        raise ConfigError(f"package {package.name}: {package.pkgbuild_display}/{CONF_NAME} would be overwritten "
                          "by the one kabuild writes; remove it")
    text = conf_text(manifest, package, lock, sources[0], fragments)
    out.append(StagedFile(CONF_NAME, package.pkgbuild / CONF_NAME, text.encode()))
    return out
