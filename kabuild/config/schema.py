"""A tiny one-pass reader for YAML mappings that turns every mistake into a located error.

Each error names the file, the dotted key, the line YAML gave it and what was expected;
unknown keys are errors, never silently ignored.
"""

from __future__ import annotations

import datetime
import enum
import math
import re
from collections.abc import Iterator
from typing import Any, Literal, NoReturn, TypeVar, overload

from kabuild.errors import KabuildError, ManifestError

E = TypeVar("E", bound=enum.Enum)
_MISSING = object()
# C0 and C1 controls but tab and newline: in a name, path or URL they are never meant, and a terminal
# would act on them when the value is printed.  (YAML and JSON let a quoted "\x01" through.)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class Section:
    """One mapping of a document being read; ``error`` is what a mistake in it raises
    (ManifestError for what people write, DocumentError for what kabuild wrote itself)."""

    def __init__(self, file: str, prefix: str, data: Any, line: int | None = None,
                 error: type[KabuildError] = ManifestError):
        self.file = file
        self.prefix = prefix
        self.error = error
        self.line = line or getattr(data, "line", None)
        if not isinstance(data, dict):
            self.fail("", f"expected a mapping, got {_kind(data)}", line)
        self.data = data
        self.seen: set = set()

    # -- locating ----------------------------------------------------------
    def key_path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix and key else (self.prefix or key)

    def line_of(self, key: str) -> int | None:
        lines = getattr(self.data, "key_lines", {})
        return lines.get(key, self.line)

    def item_line(self, key: str, index: int) -> int | None:
        """The line of item ``index`` of the list under ``key`` (the key's line if unknown)."""
        lines = getattr(self.data.get(key), "item_lines", None)
        return lines[index] if lines and 0 <= index < len(lines) else self.line_of(key)

    def fail(self, key: str, expected: str, line: int | None = None) -> NoReturn:
        line = line if line is not None else (self.line_of(key) if key else self.line)
        where = f"{self.file}:{line}" if line else self.file
        raise self.error(f"{where}: {self.key_path(key) or '(top level)'}: {expected}")

    # -- reading -----------------------------------------------------------
    def _get(self, key: str, required: bool):
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if required and key in self.data:  # written but empty: its own line, not the parent's
                self.fail(key, "is required but empty")
            if required:
                self.fail(key, "is required but missing", self.line)
            if key in self.data and self.error is ManifestError:
                # `sha256:` with nothing after it reads as "no checksum": in what people write an
                # empty key is a mistake, not a choice (a document kabuild wrote uses null for "none")
                self.fail(key, "is empty: give it a value, or leave the key out")
            return _MISSING
        return self.data[key]

    # The overloads tell the type checker what the readers guarantee: a required value (the default)
    # or one with a default is never None.
    @overload
    def text(self, key: str, *, required: Literal[True] = ..., default: None = ..., pattern: str | None = ...,
             what: str = ..., numbers: bool = ..., controls: bool = ...) -> str: ...
    @overload
    def text(self, key: str, *, required: bool = ..., default: str, pattern: str | None = ...,
             what: str = ..., numbers: bool = ..., controls: bool = ...) -> str: ...
    @overload
    def text(self, key: str, *, required: bool, default: str | None = ..., pattern: str | None = ...,
             what: str = ..., numbers: bool = ..., controls: bool = ...) -> str | None: ...

    def text(self, key: str, *, required: bool = True, default: str | None = None, pattern: str | None = None,
             what: str = "a string", numbers: bool = True, controls: bool = False) -> str | None:
        """A string.  ``numbers``: a plain integer is its own text (``ref: 6``); False where a number
        is never meant (a URL, a path, a host: ``url: 42``, ``destination: 0``).  ``controls``: free
        text kabuild recorded (an archive member's name, a tool's message) may hold control
        characters, shown escaped wherever it is printed; no other value may."""
        value = self._get(key, required)
        if value is _MISSING:
            return default
        raw = getattr(self.data, "raw", {}).get(key)
        if not numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
            shown = raw if raw is not None else str(value)
            self.fail(key, f"expected {what}, got {shown}, which YAML reads as a number "
                           f"(quote it, \"{shown}\", if you mean that text)")
        if not isinstance(value, str):
            value = self._as_text(key, value, raw, what)
        elif raw is not None and self.error is ManifestError:
            # 1e3, 0o17 in what people write: a string to PyYAML, a number to YAML 1.2 tools.
            # (PyYAML writes such strings unquoted itself, so documents kabuild wrote are exempt.)
            self.fail(key, f"expected {what}, got {raw}, which YAML 1.2 tools read as a number "
                           f"(quote it: \"{raw}\")")
        if not value.strip():
            self.fail(key, f"expected {what}, got an empty string")
        if not controls:
            self._no_control(key, value, what)
        if pattern and not re.fullmatch(pattern, value):
            self.fail(key, f"expected {what}, got {quoted(value)}")
        return value

    def _no_control(self, key: str, value: str, what: str, item: str = "", line: int | None = None) -> None:
        bad = CONTROL.search(value)
        if bad:
            self.fail(key, f"{item}expected {what}, got {quoted(value)}, which holds a control character "
                           f"(U+{ord(bad.group()):04X})", line)

    def _as_text(self, key: str, value: Any, raw: str | None, what: str, item: str = "",
                 line: int | None = None) -> str:
        """A scalar YAML did not read as a string.  A plain decimal integer is its own text
        (``ref: 6``); any other number form or a date is refused with the fix ("quote it"), since
        YAML 1.1 silently turns ``6.10`` into 6.1, ``010`` into 8, ``1:20`` into 80; a boolean or a
        collection is refused as the wrong kind."""
        if isinstance(value, int) and not isinstance(value, bool) and (raw is None or raw == str(value)):
            return str(value)
        if isinstance(value, (int, float, datetime.date)) and not isinstance(value, bool):
            shown = raw if raw is not None else str(value)
            read = "a date" if isinstance(value, datetime.date) else "a number"
            self.fail(key, f"{item}expected {what}, got {shown}, which YAML reads as {read} ({value!r}) "
                           f"(quote it: \"{shown}\")", line)
        self.fail(key, f"{item}expected {what}, got {_kind(value)}", line)

    @overload
    def integer(self, key: str, *, required: Literal[True] = ..., default: None = ..., minimum: int | None = ...,
                maximum: int | None = ..., what: str = ...) -> int: ...
    @overload
    def integer(self, key: str, *, required: bool = ..., default: int, minimum: int | None = ...,
                maximum: int | None = ..., what: str = ...) -> int: ...
    @overload
    def integer(self, key: str, *, required: bool, default: int | None = ..., minimum: int | None = ...,
                maximum: int | None = ..., what: str = ...) -> int | None: ...

    def integer(self, key: str, *, required: bool = True, default: int | None = None, minimum: int | None = None,
                maximum: int | None = None, what: str = "an integer") -> int | None:
        value = self._get(key, required)
        if value is _MISSING:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"expected {what}, got {_kind(value)} {value!r}")
        raw = getattr(self.data, "raw", {}).get(key)
        if raw is not None and self.error is ManifestError and not re.fullmatch(r"-?(0|[1-9][0-9]*)", raw):
            # 010 is 8 to YAML 1.1 and 10 to YAML 1.2; 1:30 is 90; 0x10, 1_000: say it plainly
            self.fail(key, f"got {raw}, which YAML reads as {value} (write plain decimal digits)")
        if minimum is not None and value < minimum:
            self.fail(key, f"expected {what} >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(key, f"expected {what} <= {maximum}, got {value}")
        return value

    def flag(self, key: str, *, default: bool = False) -> bool:
        value = self._get(key, False)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_kind(value)}")
        return value

    @overload
    def choice(self, key: str, cls: type[E], *, required: Literal[True] = ..., default: None = ...) -> E: ...
    @overload
    def choice(self, key: str, cls: type[E], *, required: bool = ..., default: E) -> E: ...
    @overload
    def choice(self, key: str, cls: type[E], *, required: bool, default: E | None = ...) -> E | None: ...

    def choice(self, key: str, cls: type[E], *, required: bool = True, default: E | None = None) -> E | None:
        value = self._get(key, required)
        if value is _MISSING:
            return default
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            self.fail(key, f"expected one of {choices}, got {value!r}")

    def sequence(self, key: str, *, required: bool = True) -> list:
        value = self._get(key, required)
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            self.fail(key, f"expected a list, got {_kind(value)}")
        return value

    @overload
    def section(self, key: str, *, required: Literal[True] = ...) -> Section: ...
    @overload
    def section(self, key: str, *, required: bool) -> Section | None: ...

    def section(self, key: str, *, required: bool = True) -> Section | None:
        value = self._get(key, required)
        if value is _MISSING:
            return None
        return Section(self.file, self.key_path(key), value, self.line_of(key), self.error)

    def item(self, key: str, index: int, value) -> Section:
        lines = getattr(self.data.get(key), "item_lines", None)
        line = getattr(value, "line", None) or (lines[index] if lines else None) or self.line_of(key)
        return Section(self.file, f"{self.key_path(key)}[{index}]", value, line, self.error)

    def map_items(self, key: str, *, required: bool = True):
        """Yield (name, Section) for a mapping of named sub-mappings."""
        sec = self.section(key, required=required)
        if sec is None:
            return
        for name, value in sec.data.items():
            sec.seen.add(name)
            yield name, Section(self.file, sec.key_path(str(name)), value, sec.line_of(name), self.error)

    @overload
    def number(self, key: str, *, required: Literal[True] = ..., default: None = ...,
               minimum: float | None = ...) -> float: ...
    @overload
    def number(self, key: str, *, required: bool = ..., default: float, minimum: float | None = ...) -> float: ...
    @overload
    def number(self, key: str, *, required: bool, default: float | None = ...,
               minimum: float | None = ...) -> float | None: ...

    def number(self, key: str, *, required: bool = True, default: float | None = None,
               minimum: float | None = None) -> float | None:
        """An int or a finite float (durations, sizes that may be fractional)."""
        value = self._get(key, required)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, f"expected a number, got {_kind(value)} {value!r}")
        if minimum is not None and value < minimum:
            self.fail(key, f"expected a number >= {minimum}, got {value}")
        return value

    def optional_flag(self, key: str) -> bool | None:
        """true, false, or null/absent (None): "not known" is a value of its own."""
        value = self._get(key, False)
        if value is _MISSING:
            return None
        if not isinstance(value, bool):
            self.fail(key, f"expected true, false or null, got {_kind(value)}")
        return value

    def texts(self, key: str, *, required: bool = False, pattern: str | None = None,
              what: str = "a string", controls: bool = False) -> tuple[str, ...]:
        """A list of non-empty strings."""
        out = []
        seq = self.sequence(key, required=required)
        raws = getattr(seq, "item_raw", None) or [None] * len(seq)
        for i, value in enumerate(seq):
            line = self.item_line(key, i)  # an item is named at its own line
            if value is not None and not isinstance(value, (str, list, dict)):
                self._as_text(key, value, raws[i], what, f"item {i}: ", line)
                self.fail(key, f"item {i}: expected {what}, got {_kind(value)} {value!r}", line)
            if not isinstance(value, str) or not value.strip():
                self.fail(key, f"item {i}: expected {what}, got {_kind(value)} {value!r}", line)
            if not controls:
                self._no_control(key, value, what, f"item {i}: ", line)
            if pattern and not re.fullmatch(pattern, value):
                self.fail(key, f"item {i}: expected {what}, got {quoted(value)}", line)
            out.append(value)
        return tuple(out)

    def items(self, key: str, *, required: bool = True) -> Iterator[Section]:
        """Each item of a list of mappings, as a Section of its own."""
        for i, value in enumerate(self.sequence(key, required=required)):
            yield self.item(key, i, value)

    def done(self) -> None:
        unknown = [k for k in self.data if k not in self.seen]
        if unknown:
            key = unknown[0]
            known = ", ".join(sorted(str(k) for k in self.seen))
            self.fail(str(key), f"unknown key (expected one of: {known})")


def quoted(value: str, limit: int = 160) -> str:
    """A value quoted for a message: repr, and cut short when long (a damaged file can hold megabytes)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit // 2]!r}… ({len(value)} characters)"


def _kind(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime.date):
        return "a date"
    return type(value).__name__
