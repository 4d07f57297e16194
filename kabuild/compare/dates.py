"""Dates and times in a package's bytes, and what moved them between two builds.

The evidence search (:mod:`kabuild.compare.evidence`) finds a date in build 2's bytes where build 1
has another one, and asks this module why they differ.  A date is parsed in the usual formats
(``date``'s default in the C and German locales, RFC 2822 as ``date -R`` writes it, ISO 8601,
``__DATE__ __TIME__``, and seconds to nanoseconds since the epoch) and placed on the time line:

- the same moment written with the two builds' UTC offsets: the **timezone** variation;
- each date inside the wall-clock window of its own build, build 2's shifted by the faked clock:
  the **clock** variation (with libfaketime the shift is what it faked);
- each inside its build's real window with no clock shift: the build wrote **its own time**, which
  no variation explains (a rebuild with no variation differs too).

Anything else is not explained: the dates differ for a reason this module cannot see.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SLACK = 300.0  # seconds around a build's window: container start, clock reads before the build proper
DAY = 86400.0

_MON = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_MONTHS = {m: i + 1 for i, m in enumerate(_MON.split("|"))}
_DE_MON = "Jan|Feb|Mär|Apr|Mai|Jun|Jul|Aug|Sep|Okt|Nov|Dez"
_DE_MONTHS = {m: i + 1 for i, m in enumerate(_DE_MON.split("|"))}
_DAY = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"
_DE_DAY = "Mo|Di|Mi|Do|Fr|Sa|So"
_ZONE = r"(?:[A-Z]{2,5}|[+-]\d\d(?::?\d\d)?)"

# name -> regex; the groups are read by _parse
FORMATS: dict[str, str] = {
    # date(1) in the C locale, and the kernel's UTS_VERSION: "Sat Dec  5 01:27:33 UTC 2026", "... +14 2028"
    "date": rf"(?:{_DAY}) (?P<mon>{_MON}) (?P<d>[ 0-3]?\d) (?P<t>\d\d:\d\d:\d\d) (?P<z>{_ZONE}) (?P<y>\d{{4}})",
    # date(1) in de_DE: "Sa 5. Dez 01:27:33 UTC 2026"
    "date-de": rf"(?:{_DE_DAY}) (?P<d>[ 0-3]?\d)\. (?P<demon>{_DE_MON}) (?P<t>\d\d:\d\d:\d\d) (?P<z>{_ZONE}) "
               r"(?P<y>\d{4})",
    # RFC 2822 (date -R): "Sat, 05 Dec 2026 01:27:33 +0000"
    "rfc2822": rf"(?:{_DAY}), (?P<d>[0-3]?\d) (?P<mon>{_MON}) (?P<y>\d{{4}}) (?P<t>\d\d:\d\d:\d\d) (?P<z>[+-]\d{{4}})",
    # ISO 8601 and date +'%F %T %z': "2026-12-05T01:27:33Z", "2026-01-01 14:00 +1400"
    "iso": r"(?P<y>\d{4})-(?P<m>[01]\d)-(?P<d>[0-3]\d)[T ](?P<t>\d\d:\d\d(?::\d\d)?)(?:\.\d+)?"
           r"(?: ?(?P<z>Z|UTC|[+-]\d\d:?\d\d))?",
    # C's __DATE__ " " __TIME__: "Dec  5 2026 01:27:33"
    "cdate": rf"(?P<mon>{_MON}) (?P<d>[ 0-3]\d) (?P<y>\d{{4}})(?: (?P<t>\d\d:\d\d:\d\d))?",
    # seconds, milliseconds, microseconds or nanoseconds since the epoch (2017 to 2033)
    "epoch": r"(?<![0-9])(?P<epoch>1[5-9]\d{8}(?:\d{3}|\d{6}|\d{9})?)(?![0-9])",
}
# every format at once, for finding dates in a line (group names cannot repeat across alternatives)
PATTERN = re.compile("|".join(f"(?:{re.sub(r'[(][?]P<[a-z]+>', '(?:', r)})" for r in FORMATS.values()))
_COMPILED = {name: re.compile(r) for name, r in FORMATS.items()}


@dataclass(frozen=True)
class Date:
    text: str
    format: str
    local: dt.datetime  # naive: the wall-clock reading written
    offset: float | None  # seconds east of UTC when the text says so; None: local time of the build's zone
    resolution: float  # seconds one step of the written value spans


def parse(text: str) -> Date | None:
    """The date ``text`` writes, in the first format that reads all of it."""
    for name, rx in _COMPILED.items():
        m = rx.fullmatch(text)
        if m is None:
            continue
        try:
            return _parse(name, m, text)
        except (ValueError, OverflowError):
            return None
    return None


def _parse(name: str, m: re.Match, text: str) -> Date:
    g = m.groupdict()
    if name == "epoch":
        digits = g["epoch"]
        scale = 10 ** (len(digits) - 10)
        seconds = int(digits) / scale
        return Date(text, name, dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None), 0.0, 1.0 / scale)
    month = _MONTHS[g["mon"]] if g.get("mon") else (_DE_MONTHS[g["demon"]] if g.get("demon") else int(g["m"]))
    clock = g.get("t")
    parts = [int(x) for x in clock.split(":")] if clock else [0, 0, 0]
    resolution = DAY if not clock else (60.0 if len(parts) == 2 else 1.0)
    parts += [0] * (3 - len(parts))
    local = dt.datetime(int(g["y"]), month, int(g["d"]), parts[0], parts[1], parts[2])
    return Date(text, name, local, _offset(g.get("z")), resolution)


def _offset(zone: str | None) -> float | None:
    if not zone:
        return None
    if zone in ("Z", "UTC", "GMT", "UT"):
        return 0.0
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)?", zone)
    if m is None:
        return None  # an abbreviation such as CET: read as the build's own zone
    sign = 1 if m.group(1) == "+" else -1
    return sign * (int(m.group(2)) * 3600 + int(m.group(3) or 0) * 60)


def zone_offset(zone: str, instant: float) -> float | None:
    try:
        off = dt.datetime.fromtimestamp(instant, ZoneInfo(zone)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError, OverflowError, OSError):
        return None
    return off.total_seconds() if off is not None else None


def instant(d: Date, zone: str) -> float | None:
    """Seconds since the epoch the date stands for, reading a date without offset in ``zone``."""
    naive = d.local.replace(tzinfo=dt.UTC).timestamp()
    if d.offset is not None:
        return naive - d.offset
    # A local reading: the zone's offset at (about) that moment; two passes settle a DST edge.
    off = zone_offset(zone, naive)
    if off is None:
        return None
    again = zone_offset(zone, naive - off)
    return naive - (again if again is not None else off)


@dataclass(frozen=True)
class Window:
    """When a build ran (seconds since the epoch, real clock) and how far its clock was faked ahead."""

    start: float
    end: float
    shift: float = 0.0
    zone: str = "UTC"

    def holds(self, moment: float, resolution: float, shifted: bool = True) -> bool:
        lo, hi = self.start - SLACK, self.end + SLACK
        if shifted:
            lo, hi = lo + self.shift, hi + self.shift
        return moment + resolution >= lo and moment <= hi


@dataclass(frozen=True)
class Why:
    """Why two dates differ: variations named, or the builds' own time; empty: not explained."""

    variations: tuple[str, ...] = ()
    own_time: bool = False
    what: str = ""

    @property
    def explained(self) -> bool:
        return bool(self.variations) or self.own_time


def explain(text1: str, text2: str, first: Window, second: Window, *, timezone: str | None,
            clock: str | None, locale: tuple[str, ...] = ()) -> Why:
    """Why build 1 wrote ``text1`` where build 2 wrote ``text2``.

    ``timezone`` / ``clock``: the names of the variations that changed the zone / faked the clock
    (None when not applied); ``locale``: the variations that changed the language of dates."""
    d1, d2 = parse(text1), parse(text2)
    if d1 is None or d2 is None:
        return Why()
    named: list[str] = []
    notes: list[str] = []
    if d1.format != d2.format:
        if not (locale and {d1.format, d2.format} == {"date", "date-de"}):
            return Why()
        named += locale
        notes.append("the date is written in the other language")
    i1, i2 = instant(d1, first.zone), instant(d2, second.zone)
    if i1 is None or i2 is None:
        return Why()
    resolution = max(d1.resolution, d2.resolution)
    zone_moved = _zone_moved(d1, d2, i1, i2, first, second, resolution)
    if zone_moved:
        if timezone is None:
            return Why()
        named.append(timezone)
        notes.append(f"UTC offset {_fmt_offset(d1, i1, first)} -> {_fmt_offset(d2, i2, second)}")
    if abs(i1 - i2) < resolution:
        return Why(tuple(named), False, "; ".join(notes)) if named else Why()
    in1 = first.holds(i1, resolution, shifted=False)
    if not in1:
        return Why()
    if second.shift and clock is not None and second.holds(i2, resolution, shifted=True):
        days = second.shift / DAY
        named.append(clock)
        notes.append(f"build 2's clock, {days:g} days ahead" + (": the time the build ran" if resolution < DAY else ""))
        return Why(tuple(named), resolution < DAY, "; ".join(notes))
    if second.holds(i2, resolution, shifted=False):
        notes.append("the time each build ran")
        return Why(tuple(named), True, "; ".join(notes))
    return Why()


def _zone_moved(d1: Date, d2: Date, i1: float, i2: float, first: Window, second: Window, resolution: float) -> bool:
    """Did the zone change how the moment is written?  Explicit offsets that differ and are each
    build's own zone; or local readings that only land in build 2's window read in build 2's zone."""
    if d1.offset is not None and d2.offset is not None and d1.format != "epoch":
        if d1.offset == d2.offset:
            return False
        return d1.offset == zone_offset(first.zone, i1) and d2.offset == zone_offset(second.zone, i2)
    if d1.offset is None and d2.offset is None and first.zone != second.zone and resolution < DAY:
        as_first = instant(d2, first.zone)
        if as_first is None:
            return False
        if abs(i1 - i2) < resolution:
            return True  # the same moment, written in two zones
        return (second.holds(i2, resolution) or second.holds(i2, resolution, shifted=False)) and not (
            second.holds(as_first, resolution) or second.holds(as_first, resolution, shifted=False))
    return False


def _fmt_offset(d: Date, moment: float, w: Window) -> str:
    off = d.offset if d.offset is not None else zone_offset(w.zone, moment)
    if off is None:
        return "?"
    sign = "+" if off >= 0 else "-"
    h, m = divmod(int(abs(off)) // 60, 60)
    return f"{sign}{h:02d}{m:02d}"


def years(w: Window, shifted: bool) -> set[str]:
    """The calendar years a build's clock read while it ran (for a bare year in the bytes)."""
    shift = w.shift if shifted else 0.0
    lo = dt.datetime.fromtimestamp(w.start - SLACK + shift, dt.UTC).year
    hi = dt.datetime.fromtimestamp(w.end + SLACK + shift, dt.UTC).year
    return {str(y) for y in range(lo, hi + 1)}
