"""Fleet manifests (``fleet/<host>.yaml``), read with the node list (:mod:`kabuild.config.nodes`).

Everything is read and validated in one pass into frozen dataclasses before any
work starts; later steps only ever see these values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from kabuild.config import kconfig, settings
from kabuild.config.choices import Arch, Flavor, Scope, SingleEngine
from kabuild.config.document import DTB, MAX_NAME, NAME
from kabuild.config.install import Install, read_install
from kabuild.config.nodes import Nodes, load_nodes
from kabuild.config.plausible import (
    destination,
    download_url_problem,
    parse_url,
    source_date_epoch,
)
from kabuild.config.schema import Section
from kabuild.config.yamlio import load_yaml
from kabuild.errors import ManifestError
from kabuild.files import resolve_path

SCHEMA = 1
NODES_FILE = "nodes"  # fleet/nodes.yaml is the node list, never a host's manifest


@dataclass(frozen=True)
class Source:
    url: str  # http(s)://, file:// or a path relative to the repository root
    sha256: str | None = None
    b2sum: str | None = None
    mirrors: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return Path(urlparse(self.url).path).name

    @property
    def verifiable(self) -> bool:
        return bool(self.sha256 or self.b2sum)


@dataclass(frozen=True)
class Baseline:
    name: str
    version: str
    ref: str  # names the per-baseline build directory: build/<host>/<ref>/
    source_date_epoch: int
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class Include:
    scope: Scope
    series: str

    @property
    def relpath(self) -> str:
        return f"patches/{self.scope}/{self.series}"


@dataclass(frozen=True)
class Package:
    name: str
    pkgbuild: Path  # absolute path of the PKGBUILD directory
    pkgbuild_display: str  # as written in the manifest
    patch: str | None  # file name of the PKGBUILD-side copy of the cumulative patch


@dataclass(frozen=True)
class BuildNodes:
    control: str
    experiment: str
    fallback: str | None


@dataclass(frozen=True)
class BuildSettings:
    flavor: Flavor
    nodes: BuildNodes
    timeout: int  # seconds for one makepkg run
    cross: bool = False  # build on the node's architecture with the target's cross toolchain
    single_engine: SingleEngine = SingleEngine.REFUSED


@dataclass(frozen=True)
class Kernel:
    """How a kernel recipe configures the tree: a make target, then fragments merged on top."""

    config: str  # a kconfig make target: tinyconfig, defconfig, <board>_defconfig, ...
    fragments: tuple[str, ...] = ()  # repository-relative files; inputs recorded in the lock
    # A small configuration of the same recipe that a machine without the board's build nodes can
    # build in minutes (`--kernel-config test`); its fragments are lock inputs like the others.
    test: Kernel | None = None
    # The device trees to build and package ("vendor/board.dtb", as under arch/arm64/boot/dts/);
    # empty: every device tree the configuration enables.  The test configuration inherits them.
    dtbs: tuple[str, ...] = ()

    def all_fragments(self) -> tuple[str, ...]:
        return self.fragments + (self.test.fragments if self.test else ())


@dataclass(frozen=True)
class Publish:
    repository: str
    key: str | None  # 40-hex fingerprint, "throwaway" (demo), or None: not known yet
    destination: str | None
    keep: int


@dataclass(frozen=True)
class Manifest:
    path: Path
    display: str
    host: str
    arch: Arch
    description: str
    baseline: Baseline
    includes: tuple[Include, ...]
    apply_order: tuple[Scope, ...]
    packages: tuple[Package, ...]
    build: BuildSettings
    publish: Publish | None
    install: Install | None
    kernel: Kernel | None = None

    def ordered_includes(self) -> tuple[Include, ...]:
        """Includes in apply_order; within a scope, in the order the manifest lists them."""
        return tuple(i for scope in self.apply_order for i in self.includes if i.scope == scope)


# --------------------------------------------------------------------------- loading


def _source(sec: Section) -> Source:
    url = settings.required_text(sec, "url")
    parsed = parse_url(sec, "url", url)
    if parsed.scheme not in ("", "http", "https", "file"):
        sec.fail("url", f"expected an http, https or file URL, got scheme {parsed.scheme!r}")
    problem = download_url_problem(url, parsed)
    if problem:
        sec.fail("url", f"expected an http, https or file URL or a repository-relative path: {problem}")
    sha = settings.text(sec, "sha256")
    b2 = settings.text(sec, "b2sum")
    mirrors = []
    for i, m in enumerate(sec.sequence("mirrors", required=False)):
        line = sec.item_line("mirrors", i)
        if not isinstance(m, str):
            sec.fail("mirrors", f"item {i}: expected an http, https or file URL, got {m!r}", line)
        mp = parse_url(sec, "mirrors", m, f"item {i}: ", line)
        if mp.scheme not in ("http", "https", "file"):
            sec.fail("mirrors", f"item {i}: expected an http, https or file URL, got {m!r}", line)
        problem = download_url_problem(m, mp)
        if problem:
            sec.fail("mirrors", f"item {i}: {problem}", line)
        mirrors.append(m)
    sec.done()
    return Source(url, sha, b2, tuple(mirrors))


def load_manifest(root: Path, host: str, nodes: Nodes | None = None) -> Manifest:
    if not re.fullmatch(NAME, host):
        shown = repr(host) if len(host) <= MAX_NAME else f"{host[:40]!r}… ({len(host)} characters)"
        raise ManifestError(f"invalid host name {shown}: expected lowercase letters, digits, '.', '_', '+', '-', "
                            f"at most {MAX_NAME} characters")
    if host == NODES_FILE:
        known = ", ".join(known_hosts(root)) or "none"
        raise ManifestError(f"{host!r} is not a host: fleet/{NODES_FILE}.yaml lists the build nodes, it is not a "
                            f"manifest (known hosts: {known})")
    path = root / "fleet" / f"{host}.yaml"
    display = f"fleet/{host}.yaml"
    if not path.is_file():
        known = ", ".join(known_hosts(root)) or "none"
        raise ManifestError(f"unknown host {host!r}: {display} does not exist (known hosts: {known})")
    top = Section(display, "", load_yaml(path, display))

    schema = settings.integer(top, "schema")
    if schema != SCHEMA:
        top.fail("schema", f"expected {SCHEMA}, got {schema}")
    name = settings.required_text(top, "host")
    if name != host:
        top.fail("host", f"expected {host!r} (the file name), got {name!r}")
    arch = settings.choice(top, "arch", Arch)
    description = settings.required_text(top, "description")

    b = top.section("baseline")
    sde = source_date_epoch(b, settings.integer(b, "source_date_epoch"))
    baseline = Baseline(
        name=settings.required_text(b, "name"),
        version=settings.required_text(b, "version"),
        ref=settings.required_text(b, "ref"),
        source_date_epoch=sde,
        sources=tuple(_source(b.item("sources", i, v)) for i, v in enumerate(b.sequence("sources"))),
    )
    if not baseline.sources:
        b.fail("sources", "expected at least one source")
    names = [s.filename for s in baseline.sources]
    for i, name in enumerate(names):
        if name in names[:i]:  # both would land under one name in the build context
            b.item("sources", i, b.data["sources"][i]).fail(
                "url", f"file name {name!r} is already used by sources[{names.index(name)}]")
    b.done()

    includes = []
    seen_series = set()
    for i, v in enumerate(top.sequence("includes")):
        s = top.item("includes", i, v)
        inc = Include(settings.choice(s, "scope", Scope), settings.required_text(s, "series"))
        s.done()
        if inc in seen_series:
            s.fail("series", f"{inc.relpath} is included twice")
        seen_series.add(inc)
        series_file = root / inc.relpath / "series"
        if not series_file.is_file():
            s.fail("series", f"expected a patch series at {inc.relpath}/series, which does not exist")
        includes.append(inc)

    order = []
    for i, v in enumerate(top.sequence("apply_order")):
        try:
            scope = Scope(v)
        except ValueError:
            top.fail("apply_order", f"item {i}: expected one of {', '.join(s.value for s in Scope)}, got {v!r}",
                     top.item_line("apply_order", i))
        if scope in order:
            top.fail("apply_order", f"scope {scope} is listed twice")
        order.append(scope)
    for inc in includes:
        if inc.scope not in order:
            top.fail("apply_order", f"scope {inc.scope} (used by {inc.relpath}) is missing from apply_order")

    packages: list[Package] = []
    for i, v in enumerate(top.sequence("packages")):
        s = top.item("packages", i, v)
        pname = settings.required_text(s, "name")
        ptext = settings.required_text(s, "pkgbuild")
        patch = settings.text(s, "patch")
        s.done()
        if any(p.name == pname for p in packages):
            s.fail("name", f"package {pname!r} is listed twice")
        packages.append(Package(pname, resolve_path(root, ptext), ptext, patch))
    if not packages:
        top.fail("packages", "expected at least one package")

    bs = top.section("build")
    ns = bs.section("nodes")
    bnodes = BuildNodes(
        control=settings.required_text(ns, "control"),
        experiment=settings.required_text(ns, "experiment"),
        fallback=settings.text(ns, "fallback"),
    )
    if nodes is not None:
        for key in ("control", "experiment", "fallback"):
            value = getattr(bnodes, key)
            if value is not None and value not in nodes.nodes:
                ns.fail(key, f"unknown node {value!r}: expected one of {', '.join(sorted(nodes.nodes))} (fleet/nodes.yaml)")
    ns.done()
    build = BuildSettings(
        flavor=settings.choice(bs, "flavor", Flavor),
        nodes=bnodes,
        timeout=settings.integer(bs, "timeout"),
        cross=settings.flag(bs, "cross"),
        single_engine=settings.choice(bs, "single_engine", SingleEngine),
    )
    kernel = _kernel(root, top, arch)
    if build.cross and kernel is None:
        bs.fail("cross", "a cross build is for kernel recipes (a kernel: section, whose kabuild.conf sets "
                "CROSS_COMPILE); any other recipe would build a package of this machine's architecture")
    bs.done()

    publish = None
    ps = top.section("publish", required=False)
    if ps is not None:
        publish = Publish(
            repository=settings.required_text(ps, "repository"),
            key=settings.text(ps, "key"),
            destination=destination(ps, settings.text(ps, "destination")),
            keep=settings.integer(ps, "keep"),
        )
        ps.done()

    install = None
    ins = top.section("install", required=False)
    if ins is not None:
        install = read_install(ins, root, tuple(p.name for p in packages))
    top.done()

    return Manifest(
        path=path, display=display, host=host, arch=arch, description=description,
        baseline=baseline, includes=tuple(includes), apply_order=tuple(order),
        packages=tuple(packages), build=build, publish=publish, install=install, kernel=kernel,
    )


def _dtbs(ks: Section, arch: Arch, inherited: tuple[str, ...]) -> tuple[str, ...]:
    if "dtbs" not in ks.data:
        ks.seen.add("dtbs")
        return inherited
    dtbs = ks.texts("dtbs", required=True, pattern=DTB,
                    what="a device tree as under arch/arm64/boot/dts/, e.g. rockchip/rk3399-rockpro64.dtb")
    if not dtbs:
        ks.fail("dtbs", "expected at least one device tree (leave dtbs out to build every device tree the "
                        "configuration enables)")
    if arch is not Arch.AARCH64:
        ks.fail("dtbs", f"device trees are packaged for aarch64 kernels only; this host is {arch}")
    for i, d in enumerate(dtbs):
        if d in dtbs[:i]:
            ks.fail("dtbs", f"item {i}: {d} is listed twice", ks.item_line("dtbs", i))
    return dtbs


def _kernel(root: Path, top: Section, arch: Arch, key: str = "kernel",
            inherited_dtbs: tuple[str, ...] = ()) -> Kernel | None:
    ks = top.section(key, required=False)
    if ks is None:
        return None
    config = settings.required_text(ks, "config")
    problem = kconfig.target_problem(config)
    if problem:
        ks.fail("config", problem)
    fragments: list[str] = []
    for i, v in enumerate(ks.sequence("fragments", required=False)):
        line = ks.item_line("fragments", i)
        if not isinstance(v, str) or not v.strip():
            ks.fail("fragments", f"item {i}: expected a repository-relative file path, got {v!r}", line)
        rel = Path(v)
        if rel.is_absolute() or ".." in rel.parts:
            ks.fail("fragments", f"item {i}: {v!r} must be a path inside the repository (it is a lock input)", line)
        if not (root / rel).is_file():
            ks.fail("fragments", f"item {i}: config fragment {v} does not exist", line)
        # symlinks included: what is hashed into the lock and built must be the repository's own file
        real = (root / rel).resolve()
        if root.resolve() not in real.parents:
            ks.fail("fragments", f"item {i}: {v} resolves to {real}, outside the repository (it is a lock input)",
                    line)
        if rel.as_posix() in fragments or any(Path(f).name == rel.name for f in fragments):
            ks.fail("fragments", f"item {i}: a fragment named {rel.name} is listed twice", line)
        try:
            data = real.read_bytes()
        except OSError as e:
            ks.fail("fragments", f"item {i}: {v} cannot be read: {e.strerror or e}", line)
        bad = kconfig.fragment_problem(data)
        if bad:
            at = f"{rel.as_posix()}:{bad[0]}" if bad[0] else rel.as_posix()
            ks.fail("fragments", f"item {i}: {at}: {bad[1]}", line)
        fragments.append(rel.as_posix())
    dtbs = _dtbs(ks, arch, inherited_dtbs)
    test = _kernel(root, ks, arch, "test", dtbs) if key == "kernel" else None
    ks.done()
    return Kernel(str(config), tuple(fragments), test, dtbs)


def known_hosts(root: Path) -> list[str]:
    d = root / "fleet"
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.yaml") if p.stem != NODES_FILE)


def load(root: Path, host: str) -> tuple[Manifest, Nodes]:
    nodes = load_nodes(root)
    return load_manifest(root, host, nodes), nodes


def with_overrides(manifest: Manifest, nodes: Nodes, *, flavor: str | None = None,
                   node: str | None = None, cross: bool = False, kernel_config: str | None = None) -> Manifest:
    """The manifest as one command line changes it: another image flavor, one node for both
    builds (no fallback), a cross build, or the kernel's test configuration.  The manifest file
    itself is never changed."""
    import dataclasses

    if kernel_config is not None:
        if kernel_config != "test":
            raise ManifestError(f"--kernel-config {kernel_config}: the only configuration a command line "
                                "can choose is 'test' (the manifest's kernel.test)")
        if manifest.kernel is None or manifest.kernel.test is None:
            raise ManifestError(f"--kernel-config test: {manifest.display} has no kernel.test configuration")
        manifest = dataclasses.replace(manifest, kernel=manifest.kernel.test)
    build = manifest.build
    if cross:
        if manifest.kernel is None:
            raise ManifestError(f"--cross: {manifest.host} is not a kernel host ({manifest.display} has no kernel: "
                                "section); a cross build is for kernel recipes, any other recipe would build a "
                                "package of this machine's architecture")
        build = dataclasses.replace(build, cross=True)
    if flavor is not None:
        build = dataclasses.replace(build, flavor=Flavor(flavor))
    if node is not None:
        nodes.get(node)  # an unknown node is a configuration error naming the known ones
        build = dataclasses.replace(build, nodes=BuildNodes(node, node, None))
    return dataclasses.replace(manifest, build=build)
