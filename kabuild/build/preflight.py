"""The pre-flight check before `build` and `reproduce` touch anything: when a host cannot be built
here at all (an unpinned image recipe, a missing PKGBUILD), one line names everything that is
missing for it, nodes included, instead of failing on the first thing."""

from __future__ import annotations

from pathlib import Path

from kabuild import tools
from kabuild.build import images
from kabuild.build import kernel as kernel_mod
from kabuild.build.engines import connect
from kabuild.config.manifest import Manifest
from kabuild.config.nodes import Nodes
from kabuild.errors import ConfigError, KabuildError
from kabuild.inputs import lock as lock_mod

PING_TIMEOUT = 5


def missing_values(root: Path, manifest: Manifest) -> list[str]:
    """Values a real manifest leaves out because they cannot be known from here."""
    out = []
    for s in manifest.baseline.sources:
        if not s.verifiable:
            out.append(f"baseline source {s.url} has no checksum")
    if not manifest.includes:
        out.append(f"no patch series: includes is empty in {manifest.display}")
    if manifest.publish is None:
        out.append("publish: section not configured")
    else:
        if manifest.publish.key is None:
            out.append("publish.key: signing key fingerprint not set")
        if manifest.publish.destination is None:
            out.append("publish.destination: not set")
    if manifest.build.nodes.fallback is None:
        out.append("build.nodes.fallback: no fallback build node")
    out += blocking(root, manifest)
    return out


def blocking(root: Path, manifest: Manifest) -> list[str]:
    """What makes a build of this host impossible on any node (no connection needed)."""
    out = []
    problem = images.unbuildable(root, manifest.build.flavor)
    if problem:
        out.append(problem)
    for p in manifest.packages:
        if not (p.pkgbuild / "PKGBUILD").is_file():
            out.append(f"package {p.name}: no PKGBUILD at {p.pkgbuild_display}")
    return out


def _unreachable(manifest: Manifest, nodes: Nodes) -> list[str]:
    out = []
    n = manifest.build.nodes
    for role, name in (("control", n.control), ("experiment", n.experiment), ("fallback", n.fallback)):
        if name is None:
            continue
        node = nodes.get(name)
        try:
            connect(node, ping_timeout=PING_TIMEOUT).close()
        except ConfigError as e:  # missing TLS files: say which, not "does not answer"
            out.append(f"{e} ({role})")
        except KabuildError:
            out.append(f"build node {name} ({role}, {node.url}) does not answer")
    return out


def preflight(root: Path, manifest: Manifest, nodes: Nodes, verb: str) -> None:
    """ConfigError (exit 2) naming everything missing, when the host cannot be built here; then
    ToolError (exit 5) naming every external tool ``verb`` needs that is not installed."""
    problems = blocking(root, manifest)
    if not problems:
        tools.require(verb)
        return
    problems += _unreachable(manifest, nodes)
    if not manifest.includes:
        problems.append(f"no patch series (includes is empty in {manifest.display})")
    if lock_mod.read_replaceable(root, manifest) is None:
        problems.append(f"no manifest.lock (kabuild promote {manifest.host})")
    raise ConfigError(f"{manifest.host} cannot be built here: " + "; ".join(problems)
                      + f" (to exercise its recipe on this machine: kabuild {verb} {manifest.host} "
                        f"--flavor debian --node local{_kernel_flags(manifest)})")


def _kernel_flags(manifest: Manifest) -> str:
    """For a kernel: build it cross (an emulated kernel build takes hours) and small when it can."""
    if manifest.kernel is None:
        return ""
    flags = " --cross" if manifest.arch is not kernel_mod.node_arch() else ""
    return flags + (" --kernel-config test" if manifest.kernel.test else "")
