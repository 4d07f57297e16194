"""Reading back what kabuild wrote: manifest.lock, report.json, reference.yaml.

Each of those documents is a frozen dataclass with ``to_dict()`` / ``from_dict()``;
``from_dict`` reads through the same located reader as the manifests
(:class:`kabuild.config.schema.Section`), so a damaged or hand-edited document is one line naming
the file and the key, raised as :class:`~kabuild.errors.DocumentError` (exit 3) in every
verb — never a KeyError deep inside a later step.

The small records several documents share (hashes and size, the build image) live here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kabuild.config.schema import Section
from kabuild.config.yamlio import load_yaml, read_limited
from kabuild.errors import DocumentError
from kabuild.files import Digest

HEX64 = r"[0-9a-f]{64}"
HEX128 = r"[0-9a-f]{128}"
MAX_NAME = 100  # a name becomes a file or directory name (fleet/<host>.yaml, build/<host>/<ref>/, <repo>.db)
NAME = rf"[a-z0-9][a-z0-9._+-]{{0,{MAX_NAME - 1}}}"
FINGERPRINT = r"[0-9A-F]{40}"  # an OpenPGP v4 fingerprint as gpg prints it
DTB = r"[A-Za-z0-9][A-Za-z0-9_.,+-]*(/[A-Za-z0-9][A-Za-z0-9_.,+-]*)*\.dtb"  # a device tree: <vendor>/<board>.dtb
# A package file name as pacman writes it: name-version-release-arch.pkg.tar[.ext]; no path.
PKGFILE = r"[A-Za-z0-9@_+][A-Za-z0-9@._+-]*\.pkg\.tar(\.[a-z0-9]+)?"
T = TypeVar("T")
MAX_JSON_BYTES = 16 << 20  # report.json; a kernel's, with thousands of members named, is a few MiB at most
MAX_JSON_CONTAINERS = 100_000  # objects and arrays in one JSON document; a report has a few hundred
MAX_JSON_VALUES = 1_000_000  # keys and values; a kernel report naming every member has tens of thousands


def yaml_section(path: Path, display: str) -> Section:
    """The top-level mapping of a YAML document kabuild wrote."""
    return Section(display, "", load_yaml(path, display, DocumentError), error=DocumentError)


def json_section(path: Path, display: str) -> Section:
    """The top-level object of a JSON document kabuild wrote.

    The standard parser reads it: a syntax error is named by its own line and column, a wrong value
    by its JSON path (``packages[0].build1.sha256``).  A document over :data:`MAX_JSON_BYTES` is
    refused unread."""
    return dict_section(_load_json(path, display), display)


def _load_json(path: Path, display: str) -> Any:
    raw = read_limited(path, display, DocumentError, MAX_JSON_BYTES)
    # A parsed value costs ~60 bytes (an object or array more) for as little as two bytes of text, so
    # count them first, from above: every brace and bracket, every comma and colon, also those in strings.
    containers = raw.count(b"{") + raw.count(b"[")
    values = containers + raw.count(b",") + raw.count(b":")
    if containers > MAX_JSON_CONTAINERS or values > MAX_JSON_VALUES:
        what = f"{MAX_JSON_CONTAINERS} objects and arrays" if containers > MAX_JSON_CONTAINERS else \
            f"{MAX_JSON_VALUES} values"
        raise DocumentError(f"{display}: more than {what} in one document; refusing to read it (damaged, or "
                            "not what kabuild wrote)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DocumentError(f"{display}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    del raw
    twice: list[tuple[dict[str, Any], str]] = []
    try:
        data = json.loads(text, object_pairs_hook=_noting_duplicates(twice))
    except json.JSONDecodeError as e:
        raise DocumentError(f"{display}:{e.lineno}: not valid JSON: {e.msg.removesuffix(' at')} (column {e.colno})") from None
    except RecursionError:
        raise DocumentError(f"{display}: not valid JSON: nested too deeply") from None
    finally:
        del text  # the parsed values, not both, while the caller reads them
    if twice:
        obj, key = twice[0]
        where = _json_path(data, obj)
        raise DocumentError(f"{display}: {where + '.' if where else ''}{key}: the key is given twice in one JSON "
                            "object (a hand edit? JSON readers disagree on which one counts)")
    return data


def read_json(path: Path, display: str, reader: Callable[[Section], T]) -> T:
    """``reader`` over the top-level object of a JSON document."""
    return reader(json_section(path, display))


def _noting_duplicates(twice: list[tuple[dict[str, Any], str]]) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs) and not twice:  # json.loads would keep the last silently
            seen: set[str] = set()
            for key, _value in pairs:
                if key in seen:
                    twice.append((out, key))
                    break
                seen.add(key)
        return out
    return hook


def _json_path(data: Any, target: object) -> str:
    """The path of ``target`` (found by identity) in ``data``: ``packages[0].build1``; "" at the top."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        node, where = stack.pop()
        if node is target:
            return where
        if isinstance(node, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in node.items()
                         if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node) if isinstance(v, (dict, list)))
    return "?"


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
