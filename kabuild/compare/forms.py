"""The forms the values of build 2 take in bytes, and a matcher of build 2's lines against build 1's.

Each applied variation gives its value's forms on both specs (``forms`` in the variation table,
:data:`kabuild.build.variations.TABLE`), paired position by position: build 2 wrote ``experiment``
where build 1 wrote one of ``control``.  A locale's day and month names, the calendar years a faked
clock reads, and dates in every usual format (:mod:`kabuild.compare.dates`) are added.  The
:class:`Matcher` turns a line of build 2 into literal text with holes where such a form stands, and
accepts a line of build 1 only when it reads the same with build 1's value in every hole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kabuild.build import variations
from kabuild.build.spec import BuildSpec
from kabuild.compare import dates
from kabuild.compare.explanation import Finding, FindingKind

CLIP = 160

# Day and month names as date(1) writes them, by the language of a locale ("C" = English).
NAMES = {
    "C": ("Monday Tuesday Wednesday Thursday Friday Saturday Sunday Mon Tue Wed Thu Fri Sat Sun "
          "January February March April May June July August September October November December "
          "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec").split(),
    "de": ("Montag Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag Mo Di Mi Do Fr Sa So "
           "Januar Februar März April Mai Juni Juli August September Oktober November Dezember "
           "Jan Feb Mär Apr Mai Jun Jul Aug Sep Okt Nov Dez").split(),
}


@dataclass(frozen=True)
class Rule:
    """Build 2 wrote ``experiment`` where build 1 wrote one of ``control`` (None: anything)."""

    variations: tuple[str, ...]
    control: tuple[str | None, ...]
    experiment: str


@dataclass(frozen=True)
class Conditions:
    """What the two builds differed in, as the search reads it."""

    rules: tuple[Rule, ...]
    first: dates.Window
    second: dates.Window
    timezone: str | None = None  # the variation that changed the zone, when applied
    clock: str | None = None  # the variation that faked build 2's clock
    locale: tuple[str, ...] = ()  # the variations that changed the language of dates
    collation: tuple[str, ...] = ()  # the variations that changed how makepkg orders the members
    umask: tuple[str, int, int] | None = None  # (variation, build 1's umask, build 2's)


def _language(spec: BuildSpec) -> str:
    name = (spec.lc_all or spec.locale).split(".")[0]
    return "de" if name.startswith("de") else "C"


def conditions(spec1: BuildSpec, spec2: BuildSpec, selected: Iterable[variations.Variation],
               window1: tuple[float, float], window2: tuple[float, float]) -> Conditions:
    """The rules for the variations ``selected`` between two specs (none: the null hypothesis)."""
    V = variations.Variation
    applied = [d for d in variations.TABLE if d.variation in set(selected) and d.value(spec1) != d.value(spec2)]
    names = {d.variation for d in applied}
    pairs: dict[str, tuple[list[str], list[str | None]]] = {}

    def add(variation: str, control: str | None, experiment: str | None) -> None:
        if not experiment or control == experiment:
            return
        who, alts = pairs.setdefault(experiment, ([], []))
        if variation not in who:
            who.append(variation)
        if control not in alts:
            alts.append(control)

    for d in applied:
        for c, e in zip(d.forms(spec1), d.forms(spec2), strict=False):
            add(d.variation.value, c, e)
    language = tuple(d.variation.value for d in applied if d.variation in (V.LOCALE, V.LC_ALL))
    if language and _language(spec1) != _language(spec2):
        for c, e in zip(NAMES[_language(spec1)], NAMES[_language(spec2)], strict=True):
            for v in language:
                add(v, c, e)
    else:
        language = ()
    shift = _faketime_seconds(spec2.faketime) - _faketime_seconds(spec1.faketime)
    first = dates.Window(*window1, shift=_faketime_seconds(spec1.faketime), zone=spec1.timezone)
    second = dates.Window(*window2, shift=_faketime_seconds(spec2.faketime), zone=spec2.timezone)
    clock = V.CLOCK.value if V.CLOCK in names and shift else None
    if clock:
        for year in sorted(dates.years(second, True) - dates.years(first, True)):
            for old in sorted(dates.years(first, True)):
                add(clock, old, year)
    umask = None
    if V.UMASK in names:
        umask = (V.UMASK.value, int(spec1.umask, 8), int(spec2.umask, 8))
    rules = tuple(Rule(tuple(who), tuple(alts), e) for e, (who, alts) in pairs.items())
    return Conditions(rules, first, second, V.TIMEZONE.value if V.TIMEZONE in names else None, clock,
                      language, (V.LC_ALL.value,) if V.LC_ALL in names else (), umask)


def _faketime_seconds(spec: str | None) -> float:
    """libfaketime's relative offsets as kabuild uses them ("+400d", "-2h"); 0 for none."""
    m = re.fullmatch(r"([+-]\d+(?:\.\d+)?)([smhdy]?)", spec or "")
    if m is None:
        return 0.0
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}[m.group(2)]
    return float(m.group(1)) * unit


# --------------------------------------------------------------------------- one line against another


class Matcher:
    """Explains one line (or string) of build 2 by one of build 1, under the rules."""

    def __init__(self, cond: Conditions):
        self.cond = cond
        self.rules = sorted(cond.rules, key=lambda r: -len(r.experiment))
        alternatives = [f"(?P<date>{dates.PATTERN.pattern})"]
        for i, r in enumerate(self.rules):
            alternatives.append(f"(?P<r{i}>{_bounded(r.experiment)})")
        self.tokens = re.compile("|".join(alternatives))
        self._compiled: dict[str, re.Pattern] = {}

    def template(self, s2: str) -> list[tuple[str, str]] | None:
        """Build 2's line as literal text and holes; None when it holds nothing a rule knows."""
        parts: list[tuple[str, str]] = []
        at = 0
        for m in self.tokens.finditer(s2):
            if m.start() > at:
                parts.append(("", s2[at:m.start()]))
            parts.append((m.lastgroup or "", m.group()))
            at = m.end()
        if at == 0 and not parts:
            return None
        if at < len(s2):
            parts.append(("", s2[at:]))
        return parts

    def match(self, parts: list[tuple[str, str]], s1: str, member: str) -> list[Finding] | None:
        """The findings that make ``s1`` the same line as build 2's, or None when it is not."""
        regex = []
        for kind, text in parts:
            if not kind:
                regex.append(re.escape(text))
            elif kind == "date":
                regex.append(f"({dates.PATTERN.pattern})")
            else:
                rule = self.rules[int(kind[1:])]
                if None in rule.control:
                    regex.append("(.*?)")
                else:
                    alts = sorted({*(c for c in rule.control if c), text}, key=len, reverse=True)
                    regex.append("(" + "|".join(re.escape(a) for a in alts) + ")")
        source = "".join(regex)
        compiled = self._compiled.get(source)
        if compiled is None:
            compiled = self._compiled[source] = re.compile(source, re.DOTALL)
        m = compiled.fullmatch(s1)
        if m is None:
            return None
        found = []
        holes = [(k, t) for k, t in parts if k]
        for (kind, text2), text1 in zip(holes, m.groups(), strict=True):
            if text1 == text2:
                continue
            if kind == "date":
                why = dates.explain(text1, text2, self.cond.first, self.cond.second, timezone=self.cond.timezone,
                                    clock=self.cond.clock, locale=self.cond.locale)
                if not why.explained:
                    return None
                found.append(Finding(member, FindingKind.DATE, why.variations, text1, text2, why.what,
                                     own_time=why.own_time))
            else:
                rule = self.rules[int(kind[1:])]
                found.append(Finding(member, FindingKind.VALUE, rule.variations, text1, text2))
        return found


def _bounded(text: str) -> str:
    """A form as a regex: a number never matches inside a longer number, a hexadecimal address or a
    name (``ffffffff8140d1c0``, ``__func__.1``), short words not inside a word."""
    body = re.escape(text)
    if text.isdigit():
        return rf"(?<![0-9A-Za-z_.]){body}(?![0-9A-Za-z_.])"
    if len(text) <= 3 and text.isalnum():
        return rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])"
    return body


def clip(s: str) -> str:
    s = s.strip()
    return s if len(s) <= CLIP else s[: CLIP - 1] + "…"
