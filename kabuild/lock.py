"""manifest.lock: what promotion produced from which inputs, and what later steps recorded.

The lock lives in the per-host, per-baseline build directory
``build/<host>/<baseline_ref>/manifest.lock``.  Its promotion part is a pure function
of the inputs (no timestamps), so promoting twice gives the same bytes; later verbs
append their own blocks (``build:``) without touching the promotion part.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import DriftError, LockError, ManifestError
from .files import digest_file
from .fleet import Manifest
from .patches import ApplyCheck, InputFile, Promotion, input_digests
from .yamlio import dump_yaml, load_yaml, write_yaml

LOCK_SCHEMA = 1
PROMOTION_KEYS = ("schema", "kabuild_version", "host", "baseline", "inputs", "output", "apply_check")


def build_dir(root: Path, manifest: Manifest) -> Path:
    return root / "build" / manifest.host / manifest.baseline.ref


def lock_path(root: Path, manifest: Manifest) -> Path:
    return build_dir(root, manifest) / "manifest.lock"


def promotion_record(manifest: Manifest, promo: Promotion, check: ApplyCheck) -> dict:
    b = manifest.baseline
    return {
        "schema": LOCK_SCHEMA,
        "kabuild_version": __version__,
        "host": manifest.host,
        "baseline": {
            "name": b.name,
            "version": b.version,
            "ref": b.ref,
            "source_date_epoch": b.source_date_epoch,
            "sources": [
                {k: v for k, v in (("url", s.url), ("sha256", s.sha256), ("b2sum", s.b2sum)) if v}
                for s in b.sources
            ],
        },
        "inputs": [{"path": i.path, "sha256": i.digest.sha256, "b2sum": i.digest.b2sum} for i in promo.inputs],
        "output": {"file": promo.filename, **promo.digest.as_dict()},
        "apply_check": {"status": check.status.value, "detail": check.detail},
    }


@dataclass(frozen=True)
class Lock:
    path: Path
    data: dict

    @property
    def output(self) -> dict:
        return self.data["output"]

    @property
    def build(self) -> dict | None:
        return self.data.get("build")

    @property
    def promotion_hash(self) -> str:
        """sha256 of the canonical promotion part: names exactly what was promoted."""
        part = {k: self.data[k] for k in PROMOTION_KEYS if k in self.data}
        return hashlib.sha256(dump_yaml(part).encode()).hexdigest()


def read_lock(path: Path) -> Lock | None:
    if not path.is_file():
        return None
    data = load_yaml(path, str(path))
    if not isinstance(data, dict) or data.get("schema") != LOCK_SCHEMA or "output" not in data:
        raise LockError(f"{path}: not a kabuild manifest.lock of schema {LOCK_SCHEMA}; run `kabuild promote` again")
    return Lock(path, dict(data))


def write_lock(path: Path, record: dict, previous: Lock | None) -> Lock:
    data = dict(record)
    # Later blocks stay only while the promoted output is the same bytes they were made from.
    if previous and previous.output.get("sha256") == record["output"]["sha256"]:
        for key, value in previous.data.items():
            if key not in PROMOTION_KEYS:
                data[key] = value
    write_yaml(path, data)
    return Lock(path, data)


def update_lock(lock: Lock, key: str, value) -> Lock:
    if key in PROMOTION_KEYS:
        raise ValueError(f"{key} belongs to promotion")
    data = dict(lock.data)
    data[key] = value
    write_yaml(lock.path, data)
    return Lock(lock.path, data)


class LockState(enum.StrEnum):
    MISSING = "missing"
    FRESH = "fresh"
    STALE = "stale"


@dataclass(frozen=True)
class Freshness:
    state: LockState
    reasons: tuple[str, ...] = ()


def freshness(root: Path, manifest: Manifest, lock: Lock | None) -> Freshness:
    if lock is None:
        return Freshness(LockState.MISSING, ("no manifest.lock: run `kabuild promote " + manifest.host + "`",))
    reasons = []
    try:
        current = input_digests(root, manifest)
    except ManifestError as e:
        return Freshness(LockState.STALE, (str(e),))
    recorded = {i["path"]: i["sha256"] for i in lock.data.get("inputs", [])}
    now = {i.path: i.digest.sha256 for i in current}
    for path in sorted(set(recorded) | set(now)):
        if path not in now:
            reasons.append(f"{path}: no longer an input")
        elif path not in recorded:
            reasons.append(f"{path}: new input")
        elif recorded[path] != now[path]:
            reasons.append(f"{path}: changed (sha256 {recorded[path][:12]}… → {now[path][:12]}…)")
    if [i["path"] for i in lock.data.get("inputs", [])] != [i.path for i in current] and not reasons:
        reasons.append("the order of the inputs changed")
    out = lock.path.parent / lock.output["file"]
    if not out.is_file():
        reasons.append(f"{out.name}: cumulative patch missing")
    elif digest_file(out).sha256 != lock.output["sha256"]:
        reasons.append(f"{out.name}: differs from the hash recorded in manifest.lock")
    return Freshness(LockState.STALE if reasons else LockState.FRESH, tuple(reasons))


@dataclass(frozen=True)
class Drift:
    package: str
    file: Path
    expected: str
    actual: str | None  # None: the copy is missing


def drift(manifest: Manifest, lock: Lock) -> tuple[list[Drift], list[str]]:
    """Compare each PKGBUILD-side copy of the cumulative patch with manifest.lock.

    Returns (drifted copies, packages without a copy to check).
    """
    drifted, unchecked = [], []
    expected = lock.output["sha256"]
    for pkg in manifest.packages:
        if pkg.patch is None:
            unchecked.append(pkg.name)
            continue
        copy = pkg.pkgbuild / pkg.patch
        actual = digest_file(copy).sha256 if copy.is_file() else None
        if actual != expected:
            drifted.append(Drift(pkg.name, copy, expected, actual))
    return drifted, unchecked


def require_verified(root: Path, manifest: Manifest) -> Lock:
    """The check every verb after promote runs first: lock present and fresh, no drift."""
    lock = read_lock(lock_path(root, manifest))
    fresh = freshness(root, manifest, lock)
    if fresh.state is LockState.MISSING:
        raise LockError(f"{manifest.host}: manifest.lock is missing; run `kabuild promote {manifest.host}` first")
    if fresh.state is LockState.STALE:
        raise LockError(
            f"{manifest.host}: manifest.lock is stale ({'; '.join(fresh.reasons)}); run `kabuild promote {manifest.host}`"
        )
    drifted, _ = drift(manifest, lock)
    if drifted:
        raise DriftError(
            f"{manifest.host}: PKGBUILD patch drift: "
            + "; ".join(
                f"{d.file}: expected sha256 {d.expected}, got {d.actual or 'missing file'}" for d in drifted
            )
            + f" (copy {lock.output['file']} from {lock.path.parent} into the PKGBUILD directory)"
        )
    return lock
