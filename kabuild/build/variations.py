"""Variations between build 1 (control) and build 2 (experiment), after reprotest.

Each variation is a pure function ``(spec, vary) -> spec`` over the immutable
:class:`~kabuild.build.host.BuildSpec`.  The control build is the same chain of functions
with ``vary=False`` (the identity), so both builds come from one description and differ
exactly in the variations applied.  They run in the documented order of ``ORDER``.

The build path is never varied: pacman's .BUILDINFO records it (``builddir``), so a
different path would make every package differ for a reason no PKGBUILD can fix.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable

from kabuild.build.spec import ALT_USER, BuildSpec
from kabuild.errors import ConfigError


class Variation(enum.StrEnum):
    HOSTNAME = "hostname"
    DOMAIN = "domain"
    TIMEZONE = "timezone"
    LOCALE = "locale"
    UMASK = "umask"
    USER = "user"
    HOME = "home"
    CPUS = "cpus"
    CLOCK = "clock"
    ENV = "env"
    FILEORDER = "fileorder"


def _hostname(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, hostname="kabuild-experiment") if vary else spec


def _domain(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, domainname="experiment.kabuild.invalid") if vary else spec


def _timezone(spec: BuildSpec, vary: bool) -> BuildSpec:
    # UTC+14: as far from the control's UTC as a real zone gets, so the local date differs too.
    return dataclasses.replace(spec, timezone="Pacific/Kiritimati") if vary else spec


def _locale(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, locale="de_DE.UTF-8") if vary else spec


def _umask(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, umask="0002") if vary else spec


def _user(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, user=ALT_USER) if vary else spec


def _home(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, home="/tmp") if vary else spec


def _cpus(spec: BuildSpec, vary: bool) -> BuildSpec:
    # control: every CPU of its node (spec.cpus as the run set it); experiment: spec.vary_cpus.
    return dataclasses.replace(spec, cpus=spec.vary_cpus) if vary else spec


def experiment_cpus(control: int, node: int, requested: int | None = None) -> int:
    """The CPU count of the experiment build: ``requested`` (``--vary cpus=N``) capped at what
    its node has, or half its node; never the control's count when another one is possible."""
    count = min(requested, node) if requested else max(1, node // 2)
    if count == control and requested is None:
        count = control - 1 if control > 1 else min(2, node)
    return max(1, count)


def _clock(spec: BuildSpec, vary: bool) -> BuildSpec:
    # More than a year ahead, through libfaketime; SOURCE_DATE_EPOCH stays what it is.
    return dataclasses.replace(spec, faketime="+400d") if vary else spec


def _env(spec: BuildSpec, vary: bool) -> BuildSpec:
    noise = ("KABUILD_NOISE", "experiment-1f8c2a") if vary else ("KABUILD_NOISE", "control")
    return dataclasses.replace(spec, extra_env=spec.extra_env + (noise,)) if vary else spec


def _fileorder(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, reverse_context=True) if vary else spec


TRANSFORMS: dict[Variation, Callable[[BuildSpec, bool], BuildSpec]] = {
    Variation.HOSTNAME: _hostname,
    Variation.DOMAIN: _domain,
    Variation.TIMEZONE: _timezone,
    Variation.LOCALE: _locale,
    Variation.UMASK: _umask,
    Variation.USER: _user,
    Variation.HOME: _home,
    Variation.CPUS: _cpus,
    Variation.CLOCK: _clock,
    Variation.ENV: _env,
    Variation.FILEORDER: _fileorder,
}
ORDER: tuple[Variation, ...] = tuple(TRANSFORMS)

# fileorder is not in the default set: without disorderfs (FUSE, which needs the
# capabilities kabuild drops) it only reverses the order in which the build context is
# written, and overlay/ext4 directories do not list entries in creation order.
DEFAULT: frozenset[Variation] = frozenset(ORDER) - {Variation.FILEORDER}

DESCRIPTIONS = {
    Variation.HOSTNAME: "hostname kabuild-build -> kabuild-experiment",
    Variation.DOMAIN: "domain name kabuild.internal -> experiment.kabuild.invalid",
    Variation.TIMEZONE: "TZ UTC -> Pacific/Kiritimati (UTC+14)",
    Variation.LOCALE: "LANG C.UTF-8 -> de_DE.UTF-8",
    Variation.UMASK: "umask 0022 -> 0002 (makepkg itself resets its umask to 0022)",
    Variation.USER: "builder 1000:1000 -> kabuild-alt 2000:2000",
    Variation.HOME: "HOME /home/<user> -> /tmp",
    Variation.CPUS: "every CPU of the node (MAKEFLAGS=-jN) -> half of them, or N with cpus=N",
    Variation.CLOCK: "real clock -> 400 days ahead (libfaketime)",
    Variation.ENV: "extra environment variable KABUILD_NOISE",
    Variation.FILEORDER: "build context written in reverse order (weak: not in the default set)",
}


def apply(spec: BuildSpec, selected: frozenset[Variation], vary: bool) -> BuildSpec:
    """The control (vary=False) or experiment (vary=True) spec for the selected variations."""
    for variation in ORDER:
        spec = TRANSFORMS[variation](spec, vary and variation in selected)
    return spec


def parse(text: str | None) -> frozenset[Variation]:
    """``--vary``: empty → the default set; ``+x,-y`` edits the default; ``x,y`` names a set;
    ``all`` / ``none`` as expected."""
    if text is None or not text.strip():
        return DEFAULT
    text = text.strip()
    if text == "all":
        return frozenset(ORDER)
    if text == "none":
        return frozenset()
    raw_items = [t.strip() for t in text.split(",")]
    if any(not t or t in "+-" for t in raw_items):
        raise ConfigError(f"--vary={text}: empty item (expected names like 'hostname', '+clock' or '-umask', "
                          "separated by commas)")
    items = raw_items
    relative = all(t[0] in "+-" for t in items)
    if not relative and any(t[0] in "+-" for t in items):
        raise ConfigError(f"--vary={text}: mix of +/- and plain names; use either '+x,-y' or 'x,y'")
    result = set(DEFAULT) if relative else set()
    signs: dict[Variation, str] = {}
    for item in items:
        name = item[1:] if relative else item
        try:
            v = Variation(name)
        except ValueError:
            raise ConfigError(
                f"--vary: unknown variation {name!r} (known: {', '.join(v.value for v in ORDER)})"
            ) from None
        sign = item[0] if relative else "+"
        if v in signs:
            what = "cancel each other" if signs[v] != sign else "name the same variation twice"
            raise ConfigError(f"--vary={text}: {signs[v] if relative else ''}{v.value} and {item} {what}")
        signs[v] = sign
        if relative and item[0] == "-":
            result.discard(v)
        else:
            result.add(v)
    return frozenset(result)


def ordered(selected: frozenset[Variation]) -> list[str]:
    return [v.value for v in ORDER if v in selected]


def describe(spec: BuildSpec) -> dict:
    """The varied fields of a spec, for the report."""
    return {
        "hostname": spec.hostname,
        "domainname": spec.domainname,
        "timezone": spec.timezone,
        "locale": spec.locale,
        "umask": spec.umask,
        "user": f"{spec.user.name} {spec.user.uid}:{spec.user.gid}",
        "home": spec.home or spec.user.home,
        "cpus": spec.cpus,
        "clock": spec.faketime or "real",
        "env": dict(spec.extra_env),
        "context_order": "reversed" if spec.reverse_context else "sorted",
        "build_path": "/build",
    }


@dataclasses.dataclass(frozen=True)
class VarySpec:
    """What ``--vary`` asked for: the variations, and the experiment's CPU count if given."""

    variations: frozenset[Variation]
    cpus: int | None = None


def parse_spec(text: str | None) -> VarySpec:
    """``--vary`` with parameters: ``cpus=N`` sets the experiment's CPU count (and varies cpus)."""
    if text is None:
        return VarySpec(parse(None))
    if not text.strip():
        raise ConfigError("--vary: empty value (leave --vary out for the default set, or use 'none')")
    items = [t.strip() for t in text.split(",")]
    if any(not t for t in items):
        raise ConfigError(f"--vary={text}: empty item (expected names separated by commas)")
    params = [t for t in items if "=" in t]
    cpus = None
    for item in params:
        name, _, value = item.lstrip("+").partition("=")
        if name.strip() != Variation.CPUS.value:
            raise ConfigError(f"--vary: {item!r}: only cpus takes a value (cpus=N)")
        if not re.fullmatch(r"[0-9]+", value.strip()) or int(value) < 1:  # not isdigit(): '²' is a digit
            raise ConfigError(f"--vary: {item!r}: expected cpus=N with N a positive number of CPUs")
        if cpus is not None:
            raise ConfigError("--vary: cpus=N is given twice")
        cpus = int(value)
    rest = [t for t in items if "=" not in t]
    if cpus is None:
        return VarySpec(parse(text))
    if "-cpus" in rest:
        raise ConfigError("--vary: cpus=N and -cpus cancel each other")
    base = parse(",".join(rest)) if rest else DEFAULT
    return VarySpec(base | {Variation.CPUS}, cpus)
