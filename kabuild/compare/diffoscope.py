"""Byte parity and, when bytes differ, a real diffoscope run that says *what* differs.

:func:`same` is the verdict (sha256, BLAKE2b and size all equal); :func:`diffoscope`
is the explanation.  A diffoscope run never raises for diffoscope's own failures:
exit 0 is :attr:`DiffStatus.SAME`, exit 1 is :attr:`DiffStatus.DIFFERENT` (data, not
a crash) and anything else, including our timeout, is :attr:`DiffStatus.ERROR` with
a one-line message.  Only a missing ``diffoscope`` (or ``zstd``, without which it
cannot look inside a ``.pkg.tar.zst``) raises :class:`~kabuild.errors.ToolError`.

Layout of ``out_dir`` after a run (it is replaced as a whole, via a rename)::

    out_dir/html/index.html   diffoscope --html-dir   (only when DIFFERENT)
    out_dir/diff.txt          diffoscope --text       (only when DIFFERENT)
    out_dir/diff.json         diffoscope --json       (only when DIFFERENT)
    out_dir/diffoscope.log    diffoscope's stderr     (only when it wrote any)

The paths in a :class:`DiffResult` are **absolute**; :meth:`DiffResult.relative_to`
makes them relative to a directory (the run dir) for the report.

:func:`diffoscope_members` compares only the named members of two packages (the ones
:mod:`kabuild.compare.members` found differing): they are extracted side by side into
``first/`` and ``second/`` and diffoscope compares the two directories.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from kabuild import tools
from kabuild.compare.differences import DiffResult, DiffStatus
from kabuild.compare.slow import exclude_args, excluded
from kabuild.errors import ToolError, ToolFailed
from kabuild.files import Digest, atomic_write
from kabuild.process import run

# diffoscope's per-block cap on saved diff lines; the only limit that also bounds --json.
MAX_BLOCK_LINES_SAVED = 20_000
MAX_DIFF_BLOCK_LINES = 1024  # diffoscope's default, passed explicitly
MAX_JSON_PARSE = 256 * 2**20  # never json.load a bigger diff.json; report truncated instead



def same(a: Digest, b: Digest) -> bool:
    """Byte parity: both hashes and the size agree."""
    return a.sha256 == b.sha256 and a.b2sum == b.b2sum and a.size == b.size


# --------------------------------------------------------------------------------------------
# Running diffoscope


def diffoscope_argv(exe: str, a: str, b: str, stage: Path, *, max_report_size: int, max_text: int,
                    max_block_lines_saved: int = MAX_BLOCK_LINES_SAVED, html: bool = True) -> list[str]:
    argv = [
        exe,
        "--no-progress",
        "--text-color", "never",
        "--jquery", "disable",  # no symlink to /usr/share/javascript: the run dir stays portable
        *(("--html-dir", str(stage / "html")) if html else ()),
        "--text", str(stage / "diff.txt"),
        "--json", str(stage / "diff.json"),
        "--max-report-size", str(max_report_size),
        "--max-text-report-size", str(max_text),
        "--max-diff-block-lines", str(MAX_DIFF_BLOCK_LINES),
        "--max-diff-block-lines-saved", str(max_block_lines_saved),
    ]
    if max_report_size > 0:
        # diffoscope requires page <= report; saying so avoids its warning on small limits.
        argv += ["--max-page-size", str(min(max_report_size, 40 * 2**20))]
    return argv + [a, b]


def diffoscope(a: Path, b: Path, out_dir: Path, *, timeout: float = 600, max_report_size: int = 20_000_000,
               max_text: int = 2_000_000, max_block_lines_saved: int = MAX_BLOCK_LINES_SAVED,
               extra: tuple[str, ...] = (), full: bool = True, cancel: threading.Event | None = None,
               soft_timeout: float | None = None, html: bool = True) -> DiffResult:
    """Compare two packages with diffoscope, writing its reports into ``out_dir`` (replaced).

    ``full=False`` leaves out :data:`~kabuild.compare.slow.SLOW_COMMANDS`; the result names what was
    cut.  ``soft_timeout``: diffoscope's own --timeout, after which it stops going deeper and writes
    what it found.  ``html=False``: text and JSON only (:func:`render_html` makes the HTML later)."""
    exe = tools.find("diffoscope")
    tools.find("zstd")  # without it diffoscope silently degrades to a hexdump of .zst
    a, b, out_dir = Path(a).resolve(), Path(b).resolve(), Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Inputs are named relative to their common directory so the reports say
    # "build1/x.pkg.tar.zst" rather than a host path.
    cwd = Path(os.path.commonpath([a.parent, b.parent]))
    while not cwd.is_dir():  # a missing input must reach diffoscope (-> ERROR), not fail the chdir
        cwd = cwd.parent
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        tmp = stage / ".tmp"
        tmp.mkdir()
        argv = diffoscope_argv(exe, os.path.relpath(a, cwd), os.path.relpath(b, cwd), stage,
                               max_report_size=max_report_size, max_text=max_text,
                               max_block_lines_saved=max_block_lines_saved, html=html)
        soft = ("--timeout", f"{soft_timeout:.0f}") if soft_timeout else ()
        argv[1:1] = [*extra, *exclude_args(full), *soft]
        result = _run_diffoscope(argv, cwd=cwd, tmp=tmp, timeout=timeout, stage=stage, cancel=cancel)
        shutil.rmtree(tmp, ignore_errors=True)
        _land(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return _relocate(result, stage, out_dir)


def diffoscope_members(a: Path, b: Path, names: tuple[str, ...], out_dir: Path, *, timeout: float = 600,
                       full: bool = True, cancel: threading.Event | None = None,
                       soft_timeout: float | None = None, html: bool = True) -> DiffResult:
    """diffoscope over only ``names``, extracted from both packages into first/ and second/."""
    from kabuild.compare.members import extract_members

    out_dir = Path(out_dir)
    started = time.monotonic()
    side = out_dir.parent / f".{out_dir.name}.extract"
    shutil.rmtree(side, ignore_errors=True)
    try:
        extract_members(Path(a), names, side / "first")
        extract_members(Path(b), names, side / "second")
        # The extracted files' own mtimes say nothing about the packages: only contents count here
        # (member metadata was compared by kabuild.compare.members already).
        # the extraction came out of the same time: what is left is diffoscope's
        taken = time.monotonic() - started
        timeout = max(1.0, timeout - taken)
        soft_timeout = max(1.0, soft_timeout - taken) if soft_timeout else None
        result = diffoscope(side / "first", side / "second", out_dir, timeout=timeout,
                            extra=("--exclude-directory-metadata=recursive",), full=full, cancel=cancel,
                            soft_timeout=soft_timeout, html=html)
    finally:
        shutil.rmtree(side, ignore_errors=True)
    # The members are named by the member comparison; diffoscope explains them.
    return replace(result, files=names if result.status is DiffStatus.DIFFERENT else ())


def render_html(result: DiffResult, *, timeout: float, cancel: threading.Event | None = None,
                max_report_size: int = 20_000_000) -> DiffResult:
    """The HTML report of a finished comparison, from its JSON (diffoscope --load-existing-diff):
    the slow part of a big diffoscope, done only when time is left.  Paths stay absolute."""
    if result.json is None or not Path(result.json).is_file():
        return result
    out_dir = Path(result.json).parent
    stage = Path(tempfile.mkdtemp(prefix=".html.", suffix=".tmp", dir=out_dir))
    try:
        argv = [tools.find("diffoscope"), "--no-progress", "--jquery", "disable",
                "--load-existing-diff", result.json, "--html-dir", str(stage / "html"),
                "--max-report-size", str(max_report_size), "--max-diff-block-lines", str(MAX_DIFF_BLOCK_LINES),
                "--max-page-size", str(min(max_report_size, 40 * 2**20))]
        try:
            proc = run(argv, env={"TMPDIR": str(stage)}, timeout=timeout, check=False, text=False, cancel=cancel)
        except ToolError as e:
            why = "not rendered within the run's diffoscope budget" if isinstance(e, ToolFailed) and e.timed_out \
                else str(e)
            return replace(result, cut=(*result.cut, f"HTML report: {why} (the text and JSON reports are complete)"))
        page = stage / "html" / "index.html"
        if proc.returncode not in (0, 1) or not page.is_file():
            return replace(result, cut=(*result.cut, f"HTML report: diffoscope could not render it (exit "
                                                     f"{proc.returncode})"))
        os.rename(stage / "html", out_dir / "html")
        truncated = result.truncated or any(_file_has(p, _HTML_MARKERS) for p in (out_dir / "html").glob("*.html"))
        return replace(result, html=str(out_dir / "html" / "index.html"), truncated=truncated)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _run_diffoscope(argv: list[str], *, cwd: Path, tmp: Path, timeout: float, stage: Path,
                    cancel: threading.Event | None = None) -> DiffResult:
    try:
        proc = run(argv, cwd=cwd, env={"TMPDIR": str(tmp)}, timeout=timeout, check=False, text=False, cancel=cancel)
    except ToolError as e:  # a timeout (ToolFailed), a vanished binary, an interrupted run
        return DiffResult(DiffStatus.ERROR, error=str(e))
    except (OSError, subprocess.SubprocessError) as e:
        return DiffResult(DiffStatus.ERROR, error=f"diffoscope could not run: {e}")
    stderr, cut = excluded((proc.stderr or b"").decode("utf-8", "replace"))
    if stderr.strip():
        atomic_write(stage / "diffoscope.log", stderr)
    if proc.returncode == 0:
        return DiffResult(DiffStatus.SAME, cut=cut)
    if proc.returncode != 1:
        return DiffResult(DiffStatus.ERROR, error=f"diffoscope failed (exit {proc.returncode}): {_last_line(stderr)}",
                          cut=cut)
    html, text, js = stage / "html" / "index.html", stage / "diff.txt", stage / "diff.json"
    files: tuple[str, ...] = ()
    truncated = False
    if js.is_file():
        if js.stat().st_size > MAX_JSON_PARSE:
            truncated = True
        else:
            try:
                tree = json.loads(js.read_text(encoding="utf-8", errors="replace"))
            except ValueError:
                tree = None
            if isinstance(tree, dict):
                files = differing_files(tree)
                truncated = _tree_truncated(tree)
    truncated = truncated or _outputs_truncated(stage)
    text_out = stage / "diff.txt"
    if text_out.is_file() and _file_has(text_out, (_SOFT_TIMEOUT,)):
        truncated = True
        cut = (*cut, "deeper comparisons: diffoscope stopped going deeper at the run's budget (its --timeout)")
    return DiffResult(
        DiffStatus.DIFFERENT, files=files,
        html=str(html) if html.is_file() else None,
        text=str(text) if text.is_file() else None,
        json=str(js) if js.is_file() else None,
        truncated=truncated, cut=cut,
    )


def _last_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no message"


def _land(stage: Path, out_dir: Path) -> None:
    """Rename ``stage`` to ``out_dir``, replacing a previous run's directory."""
    old = None
    if out_dir.exists() or out_dir.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        os.rename(out_dir, old / "x")
    os.rename(stage, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _relocate(result: DiffResult, stage: Path, out_dir: Path) -> DiffResult:
    def moved(p: str | None) -> str | None:
        return None if p is None else str(out_dir / Path(p).relative_to(stage))

    return replace(result, html=moved(result.html), text=moved(result.text), json=moved(result.json))


# --------------------------------------------------------------------------------------------
# Truncation markers diffoscope writes when one of its limits cut the output

_TEXT_MARKERS = (b"Max text output size reached.",)
_SOFT_TIMEOUT = b"Timeout exceeded; details may be incomplete."
_HTML_MARKERS = (b"Max HTML report size reached", b"Max report size reached", b"Max diff block lines reached")
_DIFF_MARKERS = ("lines removed ]", "[ truncated after ", "[ ... truncated by diffoscope")


def _file_has(path: Path, markers: Iterable[bytes]) -> bool:
    markers = tuple(markers)
    keep = max(len(m) for m in markers)
    tail = b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            buf = tail + chunk
            if any(m in buf for m in markers):
                return True
            tail = buf[-keep:]
    return False


def _outputs_truncated(stage: Path) -> bool:
    text = stage / "diff.txt"
    if text.is_file() and _file_has(text, _TEXT_MARKERS):
        return True
    html = stage / "html"
    if html.is_dir():
        for page in sorted(html.glob("*.html")):
            if _file_has(page, _HTML_MARKERS):
                return True
    return False


def _tree_truncated(tree: dict) -> bool:
    stack = [tree]
    while stack:
        node = stack.pop()
        ud = node.get("unified_diff")
        if isinstance(ud, str) and any(m in ud for m in _DIFF_MARKERS):
            return True
        stack.extend(c for c in node.get("details") or () if isinstance(c, dict))
    return False


# --------------------------------------------------------------------------------------------
# Which inner files differ, from diffoscope's JSON tree
#
# The tree alternates three kinds of node:
#   * layers: a decompressed stream ("x.pkg.tar" under "x.pkg.tar.zst", ".MTREE-content"
#     under ".MTREE") - transparent, the member is the one above;
#   * details: "file list" (the archive listing - parsed for added/removed/metadata
#     changes), command outputs ("readelf --wide --sections {}") and a few fixed names -
#     they say *how* the member above differs;
#   * members: paths inside an archive ("usr/bin/foo").  Inside a member that is itself an
#     archive (".tar", ".zip", ".jar", ...), its own members are reported as
#     "usr/lib/x.jar!/META-INF/MANIFEST.MF" and the outer one is not (leaf-most wins).

_COMPRESSION = (".zst", ".zstd", ".gz", ".bz2", ".xz", ".lz4", ".lzma", ".lz", ".Z")
_ARCHIVE = re.compile(
    r"\.(tar|tgz|tbz2?|txz|tzst|zip|jar|war|ear|apk|aar|whl|egg|a|ar|cpio|deb|udeb|rpm|iso|squashfs|sqfs"
    r"|img|cab|7z|xpi|crx|nupkg|epub|odt|ods|docx|xlsx)$",
    re.IGNORECASE,
)
_DETAIL_NAMES = frozenset({
    "file list", "metadata", "encoding", "filetype from file(1)", "file(1)", "stat", "symlink",
    "hexdump", "zipinfo", "zipnote", "zipdetails", "Symbol table", "Format-specific differences",
})
_COMMAND = re.compile(r"\{\}|^[\w.+\-]+ +(--?\w|\{\})")
# One line of diffoscope's libarchive listing, e.g.
# "-rw-r--r--   0 root         (0) root         (0)       12 2026-11-22 01:21:36.000000 .PKGINFO"
_LISTING = re.compile(r"^(?P<mode>\S+) .*? \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? (?P<name>.*)$")


def differing_files(tree: dict) -> tuple[str, ...]:
    """The sorted, de-duplicated inner paths that differ in a diffoscope JSON document."""
    found: set[str] = set()
    for child in _children(tree):
        _walk(child, tree, "", True, found)
    # Leaf-most: an archive member listed only because its size changed is dropped when
    # the members inside it that explain the change are listed.
    outer: set[str] = set()
    for path in found:
        parts = path.split("!/")
        outer.update("!/".join(parts[:i]) for i in range(1, len(parts)))
    return tuple(sorted(found - outer))


def _children(node: dict) -> list[dict]:
    details = node.get("details")
    return [c for c in details if isinstance(c, dict)] if isinstance(details, list) else []


def _names(node: dict) -> tuple[str, str]:
    s1, s2 = node.get("source1"), node.get("source2")
    s1 = _clean(s1) if isinstance(s1, str) else ""
    s2 = _clean(s2) if isinstance(s2, str) else s1
    return s1, s2 or s1


def _clean(name: str) -> str:
    # JSON carries undecodable bytes of file names as lone surrogates; make them printable.
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").strip()


def _is_layer(child: dict, parent: dict) -> bool:
    for c, p in zip(_names(child), _names(parent), strict=False):
        base = posixpath.basename(p.rstrip("/"))
        if not base or not c:
            continue
        if c == f"{base}-content":
            return True
        if any(base.endswith(ext) and c == base[: -len(ext)] for ext in _COMPRESSION):
            return True
    return False


def _is_detail(name: str) -> bool:
    return not name or name in _DETAIL_NAMES or name.lower() in _DETAIL_NAMES or bool(_COMMAND.search(name))


def _walk(node: dict, parent: dict, prefix: str, in_archive: bool, found: set[str]) -> bool:
    """Visit ``node`` (a child of ``parent``); add member paths to ``found``; True if any were added.

    ``in_archive`` says whether non-detail children of ``parent`` are archive members.
    ``prefix`` is the path of the enclosing archive member ("" at the top level).
    """
    n1, n2 = _names(node)
    if n1 == "file list" or n2 == "file list":
        return _listing_changes(node.get("unified_diff"), prefix, found)
    if _is_detail(n1):
        return False
    if _is_layer(node, parent):
        # Transparent: its children belong to the member above (or to the top level).
        inner = in_archive or _is_archive(n1)
        added = False
        for child in _children(node):
            added |= _walk(child, node, prefix, inner, found)
        return added
    if not in_archive:
        return False  # a non-detail, non-layer child of a plain file: e.g. an ELF section
    path = _join(prefix, n1)
    added = False
    nested = _is_archive(n1)
    for child in _children(node):
        added |= _walk(child, node, path, nested, found)
    if not added:
        found.add(path)
        if n2 and n2 != n1:
            found.add(_join(prefix, n2))
    return True


def _is_archive(name: str) -> bool:
    base = posixpath.basename(name.rstrip("/"))
    for ext in _COMPRESSION:
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    return bool(_ARCHIVE.search(base))


def _join(prefix: str, name: str) -> str:
    name = name[2:] if name.startswith("./") else name
    return f"{prefix}!/{name}" if prefix else name


def _listing_changes(unified_diff: Any, prefix: str, found: set[str]) -> bool:
    """Entries added, removed or changed in a "file list" diff (not those merely moved)."""
    if not isinstance(unified_diff, str):
        return False
    removed: dict[str, set[str]] = {}
    added: dict[str, set[str]] = {}
    for line in unified_diff.splitlines():
        if line.startswith(("---", "+++")) or line[:1] not in ("-", "+"):
            continue
        entry = line[1:]
        name = _listing_name(entry)
        if name:
            (removed if line[0] == "-" else added).setdefault(name, set()).add(entry)
    changed = False
    for name in set(removed) | set(added):
        if removed.get(name) != added.get(name):  # same line on both sides = only its position moved
            found.add(_join(prefix, name))
            changed = True
    return changed


def _listing_name(entry: str) -> str:
    m = _LISTING.match(entry)
    if m:
        name = m.group("name")
        if m.group("mode").startswith("l") and " -> " in name:
            name = name.split(" -> ", 1)[0]
    else:
        name = entry  # --exclude-directory-metadata=recursive lists bare names
    return _clean(name)
