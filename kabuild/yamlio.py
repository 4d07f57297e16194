"""YAML in and out: loading keeps line numbers for error messages, dumping is sorted and stable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import KabuildError, ManifestError
from .files import atomic_write


class LineDict(dict):
    """A mapping that remembers the line of itself and of each of its keys (1-based)."""

    line: int = 0
    key_lines: dict


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise ManifestError(
                f"{loader.name}:{key_node.start_mark.line + 1}: duplicate key {key!r}"
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


class LineList(list):
    """A list that remembers the line of each item (1-based)."""

    item_lines: list


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: Path, display: str | None = None, error: type[KabuildError] = ManifestError) -> Any:
    """Parse one YAML document keeping line numbers; every problem is ``error`` naming ``display``."""
    display = display or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{display}: file not found") from None
    except IsADirectoryError:
        raise error(f"{display}: is a directory, not a file") from None
    except UnicodeDecodeError as e:
        raise error(f"{display}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise error(f"{display}: cannot read: {e.strerror or e}") from None
    loader = _Loader(text)
    loader.name = display
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else "?"
        raise error(f"{display}:{line}: invalid YAML: {e.problem}") from None
    except ManifestError as e:  # a duplicate key, found by our constructor
        raise error(str(e)) from None
    except (yaml.YAMLError, RecursionError) as e:
        raise error(f"{display}: invalid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    finally:
        loader.dispose()


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
