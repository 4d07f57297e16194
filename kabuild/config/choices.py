"""The closed choices of a manifest, as enums: architectures, image flavors, patch scopes, single-engine
publishing, boot methods.
The manifest reader, the key table (:mod:`kabuild.config.settings`) and the command line read them."""

from __future__ import annotations

import enum


class Arch(enum.StrEnum):
    AARCH64 = "aarch64"
    X86_64 = "x86_64"

    @property
    def debian(self) -> str:
        return {Arch.AARCH64: "arm64", Arch.X86_64: "amd64"}[self]

    @property
    def docker_platform(self) -> str:
        return {Arch.AARCH64: "linux/arm64", Arch.X86_64: "linux/amd64"}[self]


class Scope(enum.StrEnum):
    SOC = "soc"
    DRIVER = "driver"
    BOARD = "board"
    MODULE = "module"
    SUBSYSTEM = "subsystem"
    ARCH = "arch"


class Flavor(enum.StrEnum):
    ARCHLINUXARM = "archlinuxarm"
    DEBIAN = "debian"


class SingleEngine(enum.StrEnum):
    """Whether a run whose two builds ran on one engine may be published (``build.single_engine``)."""

    REFUSED = "refused"  # the default: two engines, or the gate says no
    ALLOWED = "allowed"  # an owner with one build host opts in


class BootMethod(enum.StrEnum):
    EXTLINUX = "extlinux"
    UBOOT_SCRIPT = "uboot-script"
    SYSTEMD_BOOT = "systemd-boot"
    GRUB = "grub"
