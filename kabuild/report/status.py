"""What a host needs and has: `kabuild status`, and the pre-flight check before a build.

:func:`host_status` gathers everything `kabuild status` shows (the CLI only renders it).
:func:`preflight` runs before `build` and `reproduce` touch anything: when a host cannot be
built here at all (an unpinned image recipe, a missing PKGBUILD), it names in one line
everything that is missing for it, nodes included, instead of failing on the first thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kabuild import tools
from kabuild.build import rootfs
from kabuild.build.preflight import missing_values
from kabuild.compare import acceptance
from kabuild.config.manifest import Flavor, Manifest
from kabuild.config.nodes import Nodes
from kabuild.errors import ConfigError, KabuildError
from kabuild.inputs import lock as lock_mod
from kabuild.inputs import recipes
from kabuild.report.render import written


@dataclass(frozen=True)
class HostStatus:
    lock_file: Path
    manifest: Manifest
    nodes: Nodes
    lock: lock_mod.Lock | None
    freshness: lock_mod.Freshness
    drifted: tuple[lock_mod.Drift, ...]
    unchecked: tuple[str, ...]
    last_reproduce: dict[str, Any] | None
    missing: tuple[str, ...]
    tools: tuple[tuple[tools.Tool, str | None], ...] = ()
    untested: tuple[str, ...] = ()  # what this host's path has never run on the machine kabuild was made on

    def to_dict(self) -> dict[str, Any]:
        m, b, lock = self.manifest, self.manifest.baseline, self.lock
        return {
            "host": m.host,
            "arch": m.arch.value,
            "description": m.description,
            "baseline": {"name": b.name, "version": b.version, "ref": b.ref, "source_date_epoch": b.source_date_epoch},
            "includes": [f"{i.scope}/{i.series}" for i in m.ordered_includes()],
            "packages": [p.name for p in m.packages],
            "nodes": {k: (v, self.nodes.nodes[v].url if v in self.nodes.nodes else None)
                      for k in ("control", "experiment", "fallback") if (v := getattr(m.build.nodes, k))},
            "flavor": m.build.flavor.value,
            "publish": m.publish.repository if m.publish else None,
            "lock": {
                "path": str(self.lock_file),
                "state": self.freshness.state.value,
                "reasons": list(self.freshness.reasons),
                "sha256": lock.output.digest.sha256 if lock else None,
                "b2sum": lock.output.digest.b2sum if lock else None,
                "apply_check": lock.promoted.apply_check.status.value if lock else None,
                "drift": [{"package": d.package, "file": str(d.file), "expected": d.expected, "actual": d.actual}
                          for d in self.drifted],
            },
            "last_build": lock.build.to_dict() if lock and lock.build else None,
            "last_reproduce": self.last_reproduce,
            "installed": lock.install.to_dict() if lock and lock.install else None,
            "missing": list(self.missing),
            "tools": {t.name: {"package": t.package, "path": path, "verbs": sorted(t.verbs)}
                      for t, path in self.tools},
            "untested": list(self.untested),
        }


def host_status(root: Path, manifest: Manifest, nodes: Nodes) -> HostStatus:
    lock = lock_mod.read_for(root, manifest)
    fresh = lock_mod.integrity(root, manifest, lock)
    drifted: list[lock_mod.Drift] = []
    unchecked: list[str] = []
    if lock is not None:
        try:
            drifted, unchecked = lock_mod.drift(manifest, lock)
        except ConfigError as e:  # a PKGBUILD directory that is not there is shown, not fatal here
            unchecked = [str(e)]
    untested = (rootfs.UNTESTED_HERE,) if manifest.build.flavor is Flavor.ARCHLINUXARM else ()
    return HostStatus(lock_mod.lock_path(root, manifest), manifest, nodes, lock, fresh, tuple(drifted), tuple(unchecked),
                      _last_reproduce(root, manifest), tuple(missing_values(root, manifest)),
                      tuple(tools.survey()), untested)


def _last_reproduce(root: Path, manifest: Manifest) -> dict[str, Any] | None:
    from kabuild.report.runs import latest_report

    path = latest_report(root, manifest)
    if path is None:
        return None
    run_dir = path.resolve().parent
    try:
        display = str(run_dir / acceptance.FILENAME)
        r = acceptance.check_origin(acceptance.load(path, display), manifest.host, manifest.baseline.ref, display)
    except KabuildError as e:
        return {"verdict": "unreadable", "error": str(e), "run_id": run_dir.name, "finished_at": None,
                "packages": [], "report": str(run_dir / acceptance.FILENAME)}
    return {"verdict": str(r.verdict), "run_id": r.run_id, "finished_at": r.finished_at, "exit_code": r.exit_code,
            "report": str(written(run_dir)["html"]),
            "packages": [{"file": p.file, "verdict": str(p.verdict)} for p in r.packages],
            "recipe_changed": recipe_changes(manifest, r)}


def recipe_changes(manifest: Manifest, report: acceptance.Report) -> list[str]:
    """Packages whose PKGBUILD directory is not the one ``report``'s run built: its verdict is not theirs."""
    out = []
    for package in manifest.packages:
        try:
            now = recipes.pin(package).sha256
        except KabuildError:  # a missing directory is shown as the lock's problem
            continue
        ran = report.recipe_of(package.name)
        if ran != now:
            out.append(f"{package.name} ({'not built by that run' if ran is None else f'{ran[:12]} -> {now[:12]}'})")
    return out


def recipe_changes_since_latest(root: Path, manifest: Manifest) -> tuple[str, list[str]] | None:
    """(run id, changed packages) for the latest run, or None when there is no readable run."""
    from kabuild.report.runs import load_latest

    try:
        latest = load_latest(root, manifest)
    except KabuildError:
        return None
    if latest is None:
        return None
    return latest[0].run_id, recipe_changes(manifest, latest[0])
