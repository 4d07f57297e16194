"""The values that define one build: the BuildSpec (variations transform it), the staged context, the artifacts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kabuild.build.containers import ContainerConfig
from kabuild.build.images import ImageInfo
from kabuild.config.manifest import Arch, Package
from kabuild.files import Digest

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
    lc_all: str | None = None  # LC_ALL; None: unset (the variation lc_all sets it in build 2)
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
            # LANG: makepkg sorts the package's members with LC_COLLATE=C, which LC_ALL would
            # override; LC_ALL is set only by the strict variation lc_all, which tests exactly that.
            ("LANG", self.locale),
            ("KABUILD_UMASK", self.umask),
            ("HOME", self.home or self.user.home),
            ("USER", self.user.name),
            ("LOGNAME", self.user.name),
        ]
        if self.lc_all:
            env.append(("LC_ALL", self.lc_all))
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
