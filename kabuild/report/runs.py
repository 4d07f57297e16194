"""Where reproduce runs live (``build/<host>/<ref>/runs/<run_id>/``) and how the latest one is read."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from kabuild.compare import acceptance
from kabuild.compare.acceptance import (
    Report,
)
from kabuild.config.manifest import Manifest
from kabuild.errors import ConfigError
from kabuild.inputs.lock import build_dir
from kabuild.timestamps import utc_stamp

Progress = Callable[[str], None]


def runs_dir(root: Path, manifest: Manifest) -> Path:
    return build_dir(root, manifest) / "runs"


def latest_report(root: Path, manifest: Manifest) -> Path | None:
    """The latest run's report.json; None only when there is no run at all.  A ``latest`` link
    that points nowhere, or at a run without a readable report, still gives the path, so the
    reader names the damage (exit 3) the way publish does, instead of "no run yet"."""
    latest = runs_dir(root, manifest) / "latest"
    if not latest.is_symlink() and not latest.exists():
        return None
    return latest / acceptance.FILENAME


def load_latest(root: Path, manifest: Manifest) -> tuple[Report, Path] | None:
    """The latest run's report and directory; DocumentError (exit 3) when the report is damaged."""
    path = latest_report(root, manifest)
    if path is None:
        return None
    run_dir = path.resolve().parent
    display = display_path(root, run_dir / acceptance.FILENAME)
    report = acceptance.load(path, display)
    return acceptance.check_origin(report, manifest.host, manifest.baseline.ref, display), run_dir


def require_latest(root: Path, manifest: Manifest) -> tuple[Report, Path]:
    """:func:`load_latest`, or a ConfigError (exit 2) saying there is no run yet."""
    latest = load_latest(root, manifest)
    if latest is None:
        raise ConfigError(f"{manifest.host}: no reproduce run yet; run `kabuild reproduce {manifest.host}`")
    return latest


def new_run_id() -> str:
    return utc_stamp() + "-" + secrets.token_hex(4)


def display_path(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
