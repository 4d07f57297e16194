"""`kabuild promote` end to end: series -> cumulative patch -> apply check -> manifest.lock."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kabuild.config.manifest import Manifest
from kabuild.files import atomic_write
from kabuild.inputs import lock as lock_mod
from kabuild.inputs.patches import ApplyCheck, ApplyStatus, Promotion, check_applies, cumulative_name, promote
from kabuild.inputs.sources import SourceCache


@dataclass(frozen=True)
class PromoteResult:
    promotion: Promotion
    patch: Path  # the cumulative patch beside the lock
    check: ApplyCheck
    lock: lock_mod.Lock


def promote_host(root: Path, manifest: Manifest) -> PromoteResult:
    """Write the cumulative patch and the lock; a damaged previous lock is simply replaced."""
    promo = promote(root, manifest)
    bdir = lock_mod.build_dir(root, manifest)
    check = apply_check(root, manifest, promo.data, bdir)
    out = bdir / promo.filename
    atomic_write(out, promo.data)
    previous = lock_mod.read_replaceable(root, manifest)
    lock = lock_mod.write_lock(lock_mod.lock_path(root, manifest), lock_mod.promoted(manifest, promo, check), previous)
    return PromoteResult(promo, out, check, lock)


def apply_check(root: Path, manifest: Manifest, data: bytes, bdir: Path) -> ApplyCheck:
    """Apply the patch to the baseline tarball when it is at hand (verified, in the cache)."""
    baseline = manifest.baseline.sources[0]
    if not baseline.verifiable:
        return ApplyCheck(ApplyStatus.SKIPPED, f"baseline source {baseline.filename} has no checksum in the manifest")
    found = SourceCache().lookup(baseline, root)
    if found is None:
        return ApplyCheck(
            ApplyStatus.SKIPPED,
            f"baseline source {baseline.filename} is not in the source cache (run `kabuild fetch {manifest.host}`)",
        )
    bdir.mkdir(parents=True, exist_ok=True)
    tmp = bdir / ".apply-check.patch"
    try:
        tmp.write_bytes(data)
        return check_applies(tmp, found.path, cumulative_name(manifest.host, manifest.baseline.ref))
    finally:
        tmp.unlink(missing_ok=True)
