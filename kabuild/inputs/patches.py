"""Patch series (quilt-style ``series`` files) and their promotion into one cumulative patch."""

from __future__ import annotations

import enum
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kabuild import tools
from kabuild.config.manifest import Manifest
from kabuild.errors import ManifestError, PatchError
from kabuild.files import Digest, digest_bytes, digest_file
from kabuild.process import run


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
        try:
            target = (series_dir / name).resolve()
            if series_dir.resolve() not in target.parents:
                raise ManifestError(f"{relpath}/series:{lineno}: {name!r} points outside the series directory")
            if not target.is_file():
                raise ManifestError(f"{relpath}/series:{lineno}: patch file {name!r} does not exist")
            data = target.read_bytes()
        except (OSError, ValueError) as e:  # a NUL byte, a name too long, an unreadable file
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ManifestError(f"{relpath}/series:{lineno}: patch file {name!r} cannot be read: {reason}") from None
        if target in seen:
            raise ManifestError(f"{relpath}/series:{lineno}: {name!r} is listed twice")
        seen.add(target)
        problem = patch_problem(data)
        if problem:
            raise ManifestError(f"{relpath}/series:{lineno}: {name!r} {problem}")
        result.append(f"{relpath}/{target.relative_to(series_dir.resolve()).as_posix()}")
    return result


_HUNK = re.compile(rb"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
# git extended headers that are a change on their own (no hunk needed); GNU patch applies them
_GIT_CHANGES = (b"rename from ", b"rename to ", b"old mode ", b"new mode ", b"new file mode ",
                b"deleted file mode ", b"copy from ", b"copy to ")


def patch_problem(data: bytes) -> str | None:
    """Why ``data`` is not a patch that changes something, or None.

    A patch is a unified (or git) diff with at least one hunk that adds or removes a line, or a
    git rename, copy, mode change, new or deleted file.  Binary noise, plain text, an empty file,
    a hunk of context only and git binary patches (which ``patch -p1`` cannot apply) are refused.
    """
    if not data.strip():
        return "is empty: a patch must change something"
    if b"\0" in data:
        return f"is binary (a NUL byte at offset {data.index(bytes(1))}), not a unified diff"
    lines = data.splitlines()
    if any(line.startswith(b"GIT binary patch") for line in lines):
        return "is a git binary patch, which `patch -p1` cannot apply"
    changes = hunks = 0
    old = new = 0  # lines still expected in the current hunk
    for number, line in enumerate(lines, 1):
        if old > 0 or new > 0:
            tag = line[:1]
            if tag in (b" ", b""):
                old, new = old - 1, new - 1
            elif tag == b"-":
                old, changes = old - 1, changes + 1
            elif tag == b"+":
                new, changes = new - 1, changes + 1
            elif tag != b"\\":  # "\ No newline at end of file"
                return f"line {number}: hunk ends early (expected {max(old, 0)} more old and {max(new, 0)} more new lines)"
            continue
        m = _HUNK.match(line)
        if m:
            hunks += 1
            old = int(m.group(2)) if m.group(2) is not None else 1
            new = int(m.group(4)) if m.group(4) is not None else 1
        elif line.startswith(_GIT_CHANGES):
            changes += 1
    if old > 0 or new > 0:
        return "ends in the middle of a hunk (truncated?)"
    if not hunks and not changes:
        return "is not a unified diff: no hunk (@@ -a,b +c,d @@) and no git rename, copy or mode change"
    if not changes:
        return "changes nothing: its hunks hold context lines only"
    return None


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
        inputs.extend(InputFile(rel, digest_file(root / rel)) for rel in manifest.kernel.all_fragments())
    data = b"".join(chunks)
    return Promotion(manifest.host, manifest.baseline.ref, data, digest_bytes(data), tuple(inputs), tuple(patch_paths))


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
        result = run([tools.find("patch"), "-p1", "--batch", "--force", "--no-backup-if-mismatch", "-i", str(patch.resolve())],
                     cwd=top, check=False, timeout=600)
        if result.returncode != 0:
            lines = (result.stdout + result.stderr).strip().splitlines()
            raise PatchError(
                f"{name or patch.name} does not apply to {tarball.name}: " + (" | ".join(lines[-3:]) or "patch failed")
            )
        return ApplyCheck(ApplyStatus.PASSED, f"applies with -p1 to {tarball.name}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
