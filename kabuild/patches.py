"""Patch series (quilt-style ``series`` files) and their promotion into one cumulative patch."""

from __future__ import annotations

import enum
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ManifestError, PatchError
from .files import Digest, digest_bytes, digest_file
from .fleet import Manifest
from .run import run


@dataclass(frozen=True)
class InputFile:
    path: str  # relative to the repository root, '/'-separated
    digest: Digest


@dataclass(frozen=True)
class Promotion:
    host: str
    baseline_ref: str
    data: bytes  # the cumulative patch
    digest: Digest
    inputs: tuple[InputFile, ...]  # manifest, every series file and patch in apply order, kernel fragments
    patches: tuple[str, ...]  # the patch files concatenated, in order

    @property
    def filename(self) -> str:
        return cumulative_name(self.host, self.baseline_ref)


def cumulative_name(host: str, ref: str) -> str:
    return f"{host}-{ref}-cumulative.patch"


def read_series(root: Path, relpath: str) -> list[str]:
    """The patch files of one series, in order, as repository-relative paths."""
    series_dir = root / relpath
    series = series_dir / "series"
    result = []
    try:
        text = series.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{relpath}/series: not UTF-8 text ({e.reason} at byte {e.start})") from None
    seen: set[Path] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 1 and parts[1:] != ["-p1"]:
            raise ManifestError(f"{relpath}/series:{lineno}: only '-p1' patches are supported, got {line!r}")
        name = parts[0]
        target = (series_dir / name).resolve()
        if series_dir.resolve() not in target.parents:
            raise ManifestError(f"{relpath}/series:{lineno}: {name!r} points outside the series directory")
        if not target.is_file():
            raise ManifestError(f"{relpath}/series:{lineno}: patch file {name!r} does not exist")
        if target in seen:
            raise ManifestError(f"{relpath}/series:{lineno}: {name!r} is listed twice")
        seen.add(target)
        result.append(f"{relpath}/{target.relative_to(series_dir.resolve()).as_posix()}")
    return result


def promote(root: Path, manifest: Manifest) -> Promotion:
    """Concatenate the included series in apply_order into one cumulative patch.

    Pure with respect to file contents: the same bytes in give the same bytes out, on
    any machine (no timestamps, no paths, no locale).  Each patch keeps its bytes; a
    missing final newline is added so the next patch starts on its own line.
    """
    inputs = [InputFile(manifest.display, digest_file(manifest.path))]
    chunks: list[bytes] = []
    patch_paths: list[str] = []
    for inc in manifest.ordered_includes():
        inputs.append(InputFile(f"{inc.relpath}/series", digest_file(root / inc.relpath / "series")))
        for rel in read_series(root, inc.relpath):
            data = (root / rel).read_bytes()
            inputs.append(InputFile(rel, digest_bytes(data)))
            if data and not data.endswith(b"\n"):
                data += b"\n"
            chunks.append(data)
            patch_paths.append(rel)
    if manifest.kernel is not None:
        # kernel config fragments are build inputs too: a changed fragment is drift
        inputs.extend(InputFile(rel, digest_file(root / rel)) for rel in manifest.kernel.fragments)
    data = b"".join(chunks)
    return Promotion(manifest.host, manifest.baseline.ref, data, digest_bytes(data), tuple(inputs), tuple(patch_paths))


def input_digests(root: Path, manifest: Manifest) -> tuple[InputFile, ...]:
    return promote(root, manifest).inputs


class ApplyStatus(enum.StrEnum):
    PASSED = "passed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class ApplyCheck:
    status: ApplyStatus
    detail: str


def check_applies(patch: Path, tarball: Path, name: str | None = None) -> ApplyCheck:
    """Apply the patch (-p1) to a throw-away copy of the unpacked baseline tarball; raise PatchError if it fails."""
    if patch.stat().st_size == 0:
        return ApplyCheck(ApplyStatus.PASSED, "empty patch: nothing to apply")
    tmp = Path(tempfile.mkdtemp(prefix="kabuild-apply-"))
    try:
        try:
            with tarfile.open(tarball) as tf:
                tf.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise PatchError(f"cannot unpack baseline {tarball.name} for the apply check: {e}") from None
        entries = [p for p in tmp.iterdir()]
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        # A real apply into a throw-away tree: --dry-run cannot check a cumulative patch
        # that touches the same file twice, because the first hunks are never applied.
        result = run(["patch", "-p1", "--batch", "--force", "--no-backup-if-mismatch", "-i", str(patch.resolve())],
                     cwd=top, check=False, timeout=600)
        if result.returncode != 0:
            lines = (result.stdout + result.stderr).strip().splitlines()
            raise PatchError(
                f"{name or patch.name} does not apply to {tarball.name}: " + (" | ".join(lines[-3:]) or "patch failed")
            )
        return ApplyCheck(ApplyStatus.PASSED, f"applies with -p1 to {tarball.name}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
