"""Reading back what kabuild wrote: manifest.lock, report.json, reference.yaml.

Each of those documents is a frozen dataclass with ``to_dict()`` / ``from_dict()``;
``from_dict`` reads through the same located reader as the manifests
(:class:`kabuild.config.schema.Section`), so a damaged or hand-edited document is one line naming
the file and the key, raised as :class:`~kabuild.errors.DocumentError` (exit 3) in every
verb — never a KeyError deep inside a later step.

The small records several documents share (hashes and size, the build image) live here.
"""

from __future__ import annotations

import bisect
import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kabuild.config.schema import Section
from kabuild.config.yamlio import LineDict, LineList, load_yaml
from kabuild.errors import DocumentError
from kabuild.files import Digest

HEX64 = r"[0-9a-f]{64}"
HEX128 = r"[0-9a-f]{128}"
NAME = r"[a-z0-9][a-z0-9._+-]*"
FINGERPRINT = r"[0-9A-F]{40}"  # an OpenPGP v4 fingerprint as gpg prints it
DTB = r"[A-Za-z0-9][A-Za-z0-9_.,+-]*(/[A-Za-z0-9][A-Za-z0-9_.,+-]*)*\.dtb"  # a device tree: <vendor>/<board>.dtb
# A package file name as pacman writes it: name-version-release-arch.pkg.tar[.ext]; no path.
PKGFILE = r"[A-Za-z0-9@_+][A-Za-z0-9@._+-]*\.pkg\.tar(\.[a-z0-9]+)?"
T = TypeVar("T")


def yaml_section(path: Path, display: str) -> Section:
    """The top-level mapping of a YAML document kabuild wrote."""
    return Section(display, "", load_yaml(path, display, DocumentError), error=DocumentError)


def json_section(path: Path, display: str, *, located: bool = False) -> Section:
    """The top-level object of a JSON document kabuild wrote.  ``located``: objects and arrays
    remember their lines (slower; :func:`read_json` asks for it only to name a damaged key's line)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DocumentError(f"{display}: file not found") from None
    except IsADirectoryError:
        raise DocumentError(f"{display}: is a directory, not a file") from None
    except OSError as e:
        raise DocumentError(f"{display}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
        data = loads_located(text, display) if located else json.loads(text, object_pairs_hook=_no_duplicates(display))
    except UnicodeDecodeError as e:
        raise DocumentError(f"{display}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DocumentError(f"{display}:{e.lineno}: not valid JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise DocumentError(f"{display}: not valid JSON: nested too deeply") from None
    return dict_section(data, display)


def read_json(path: Path, display: str, reader: Callable[[Section], T]) -> T:
    """``reader`` over a JSON document; a damaged one is read again with line numbers, so its
    error names the line as for YAML documents, at no cost to a document that is fine."""
    try:
        return reader(json_section(path, display))
    except DocumentError:
        return reader(json_section(path, display, located=True))  # raises the same error, located


def _no_duplicates(display: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json.loads keeps the last of two equal keys: a hand edit would be silently half-applied
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise DocumentError(f"{display}: duplicate key {key!r} in one JSON object")
            out[key] = value
        return out
    return hook


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+')


def _member_offsets(text: str) -> dict[int, list[int]]:
    """For the offset of every ``{`` and ``[``: where its keys or items begin (one pass)."""
    members: dict[int, list[int]] = {}
    stack: list[int] = []
    expect = False
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if expect and tok not in "]}":
            members[stack[-1]].append(m.start())
        expect = False
        if tok in ("{", "["):
            stack.append(m.start())
            members[m.start()] = []
            expect = True
        elif tok in ("}", "]"):
            if stack:
                stack.pop()
        elif tok == "," and stack:
            expect = True
    return members


def loads_located(text: str, display: str) -> Any:
    """json.loads, but objects and arrays remember their lines (:class:`~kabuild.config.yamlio.LineDict`,
    :class:`~kabuild.config.yamlio.LineList`); a key given twice in one object is refused at its line."""
    newlines = [m.start() for m in re.finditer("\n", text)]
    members = _member_offsets(text)

    def line_at(offset: int) -> int:
        return bisect.bisect_left(newlines, offset) + 1

    def parse_object(s_and_end: tuple[str, int], strict: bool, scan_once: Any, object_hook: Any,
                     object_pairs_hook: Any, memo: Any = None) -> tuple[LineDict, int]:
        begin = s_and_end[1] - 1
        pairs, end = json.decoder.JSONObject(s_and_end, strict, scan_once, None, list, memo)  # type: ignore[attr-defined]
        out = LineDict()
        out.line, out.key_lines, out.raw = line_at(begin), {}, {}
        for (key, value), at in zip(pairs, members.get(begin, []), strict=False):
            if key in out:
                raise DocumentError(f"{display}:{line_at(at)}: duplicate key {key!r} in one JSON object")
            out[key] = value
            out.key_lines[key] = line_at(at)
        return out, end

    def parse_array(s_and_end: tuple[str, int], scan_once: Any) -> tuple[LineList, int]:
        begin = s_and_end[1] - 1
        values, end = json.decoder.JSONArray(s_and_end, scan_once)  # type: ignore[attr-defined]
        out = LineList(values)
        out.line = line_at(begin)
        out.item_lines = [line_at(at) for at in members.get(begin, [])][:len(values)]
        out.item_raw = [None] * len(values)
        return out, end

    decoder: Any = json.JSONDecoder()  # its parse_* hooks are undocumented (and untyped) attributes
    decoder.parse_object = parse_object
    decoder.parse_array = parse_array
    scanner: Any = json.scanner
    decoder.scan_once = scanner.py_make_scanner(decoder)  # the C scanner ignores the two hooks above
    return decoder.decode(text)


def dict_section(data: Any, display: str, prefix: str = "") -> Section:
    return Section(display, prefix, data, error=DocumentError)


def check_header(sec: Section, *, schema: int, kind: str | None = None) -> None:
    """The version (and kind) every document starts with; a newer or older one is named as such."""
    found = sec.integer("schema", what=f"the document schema version ({schema})")
    if found != schema:
        sec.fail("schema", f"this kabuild reads schema {schema}, got {found} (written by another kabuild version?)")
    if kind is not None:
        found_kind = sec.text("kind", what=f"the document kind ({kind!r})")
        if found_kind != kind:
            sec.fail("kind", f"expected {kind!r}, got {found_kind!r}")


def read_digest(sec: Section) -> Digest:
    """sha256 + b2sum + size of one file."""
    return Digest(
        sha256=str(sec.text("sha256", pattern=HEX64, what="64 lowercase hex digits")),
        b2sum=str(sec.text("b2sum", pattern=HEX128, what="128 lowercase hex digits")),
        size=int(sec.integer("size", minimum=0, what="a size in bytes") or 0),
    )


@dataclass(frozen=True)
class ImageRecord:
    """The build image as documents record it (tag named by recipe hash, engine image id)."""

    tag: str
    id: str
    recipe_hash: str
    flavor: str
    arch: str

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "id": self.id, "recipe_hash": self.recipe_hash, "flavor": self.flavor,
                "arch": self.arch}

    @classmethod
    def from_section(cls, sec: Section, *, need_id: bool = True) -> ImageRecord:
        rec = cls(
            tag=str(sec.text("tag", what="an image tag")),
            id=str(sec.text("id", required=need_id, default="", what="an image id")),
            recipe_hash=str(sec.text("recipe_hash", pattern=HEX64, what="64 lowercase hex digits")),
            flavor=str(sec.text("flavor", what="an image flavor")),
            arch=str(sec.text("arch", what="an architecture")),
        )
        sec.done()
        return rec


def run_path(sec: Section, key: str, *, required: bool = False) -> str | None:
    """A path inside the run directory: relative, no '..', so a report cannot point elsewhere."""
    value = sec.text(key, required=required)
    if value is None:
        return None
    parts = Path(value).parts
    if Path(value).is_absolute() or ".." in parts:
        sec.fail(key, f"expected a path inside the run directory, got {value!r}")
    return value
