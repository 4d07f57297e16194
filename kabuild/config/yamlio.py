"""YAML in and out: loading keeps line numbers for error messages, dumping is sorted and stable.

Reading is bounded: a document over :data:`MAX_BYTES` or with more than :data:`MAX_NODES` values is
refused before it is built, so no file, however damaged, makes kabuild use more than about 100 MiB to
read it (README: "Documents and their limits"; `make bench-memory` measures it).  libyaml parses when PyYAML has it (the wheels and
Debian's python3-yaml do): it reads straight from the file's bytes, and is what keeps the memory
per value small.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from kabuild.errors import KabuildError, ManifestError
from kabuild.files import atomic_write

MAX_BYTES = 4 << 20  # a YAML document kabuild reads; the largest real one (a kernel's lock) is tens of KiB
MAX_NODES = 100_000  # values (scalars, lists, mappings, aliases) in one YAML document
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when there, pure Python otherwise


class LineDict(dict):
    """A mapping that remembers the line of itself and of each of its keys (1-based), and the
    text as written of every plain scalar value that YAML turned into something other than a
    string (``raw``: ``010`` read as 8, ``1.10`` as 1.1, ``1:20`` as 80), so a reader expecting
    a string can say what YAML did to it."""

    __slots__ = ("line", "key_lines", "raw")  # no per-instance __dict__: a document may hold many
    line: int
    key_lines: dict
    raw: dict


class _Loader(_Base):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    result.raw = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise ManifestError(f"{loader.name}:{key_node.start_mark.line + 1}: a key must be a plain value, "
                                f"not a {'list' if isinstance(key, list) else 'mapping'}") from None
        if key in result:
            raise ManifestError(
                f"{loader.name}:{key_node.start_mark.line + 1}: duplicate key {key!r}"
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
        raw = _raw_scalar(value_node)
        if raw is not None:
            result.raw[key] = raw
    return result


_STR_TAG = "tag:yaml.org,2002:str"


# A number in the YAML 1.2 core schema.  PyYAML (YAML 1.1) reads some of these as strings
# (1e3, 0o17), other YAML tools as numbers: unquoted, they mean different things to different tools.
_YAML12_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+"
                            r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")


def _raw_scalar(node: yaml.Node) -> str | None:
    """The text of a plain (unquoted) scalar that YAML resolved to a non-string (number, boolean,
    date), or that a YAML 1.2 tool would read as a number although PyYAML gives a string."""
    if not isinstance(node, yaml.ScalarNode) or node.style not in (None, ""):  # libyaml: "" is plain
        return None
    if node.tag != _STR_TAG or _YAML12_NUMBER.fullmatch(node.value):
        return str(node.value)
    return None


class LineList(list):
    """A list that remembers the line of each item (1-based) and, like :class:`LineDict`, the
    text as written of each plain scalar item YAML did not read as a string (None otherwise)."""

    __slots__ = ("line", "item_lines", "item_raw")
    line: int
    item_lines: list
    item_raw: list


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    result.item_raw = [_raw_scalar(child) for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def read_limited(path: Path, display: str, error: type[KabuildError], limit: int) -> bytes:
    """The bytes of a document, refused before reading when it is over ``limit`` or not a regular file
    (a FIFO would block, a device never end)."""
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer; it is refused below instead
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise error(f"{display}: not a regular file")
            if st.st_size > limit:
                raise error(f"{display}: {_size(st.st_size)} is over the {_size(limit)} limit for this document; "
                            "refusing to read it (damaged, or not what kabuild wrote)")
            raw = f.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{display}: file not found") from None
    except IsADirectoryError:
        raise error(f"{display}: is a directory, not a file") from None
    except OSError as e:
        raise error(f"{display}: cannot read: {e.strerror or e}") from None
    if len(raw) > limit:  # it grew while we looked
        raise error(f"{display}: over the {_size(limit)} limit for this document; refusing to read it")
    return raw


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def load_yaml(path: Path, display: str | None = None, error: type[KabuildError] = ManifestError) -> Any:
    """Parse one YAML document keeping line numbers; every problem is ``error`` naming ``display``
    (and the line where there is one)."""
    display = display or str(path)
    raw = read_limited(path, display, error, MAX_BYTES)
    try:
        raw.decode("utf-8")  # what libyaml would also refuse, said the way every reader here says it
    except UnicodeDecodeError as e:
        raise error(f"{display}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        _count_nodes(raw, display, error)
        loader = _Loader(raw)
        loader.name = display
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as e:  # a control character or a non-character: located by its byte offset
        at = raw.count(b"\n", 0, e.position) + 1
        code = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "\0")
        kind = "a control character" if code < 0x20 or 0x7F <= code <= 0x9F else "an unprintable character"
        raise error(f"{display}:{at}: invalid YAML: {kind} (U+{code:04X}) in the text; YAML allows only "
                    "printable characters, tabs and line breaks") from None
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else "?"
        raise error(f"{display}:{line}: invalid YAML: {e.problem}") from None
    except ManifestError as e:  # a duplicate key or a collection as a key, found by our constructor
        raise error(str(e)) from None
    except (yaml.YAMLError, RecursionError) as e:
        raise error(f"{display}: invalid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _count_nodes(raw: bytes, display: str, error: type[KabuildError]) -> None:
    """Refuse a document with more than :data:`MAX_NODES` values before building any of them: the
    events stream through in constant memory; a node and the value built from it cost ~650 bytes."""
    parser = _Base(raw)
    try:
        count = 0
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionStartEvent)):
                count += 1
                if count > MAX_NODES:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise error(f"{display}:{line}: more than {MAX_NODES} values in one document; refusing "
                                "to read it (damaged, or not what kabuild wrote)")
    finally:
        parser.dispose()


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def dump_yaml(data) -> str:
    return yaml.safe_dump(_plain(data), sort_keys=True, default_flow_style=False, allow_unicode=True)


def write_yaml(path: Path, data) -> None:
    atomic_write(path, dump_yaml(data))
