"""Variations between build 1 (control) and build 2 (experiment), after reprotest.

Each variation is one :class:`Definition` in :data:`TABLE`: its name, what it sets, the control
and experiment values, and a pure function ``(spec, vary) -> spec`` over the immutable
:class:`~kabuild.build.spec.BuildSpec`.  The control build is the same chain of functions
with ``vary=False`` (the identity), so both builds come from one description and differ
exactly in the variations applied.  They run in the order of the table.  ``--help``, the
report's variation rows, the README table and the evidence search all read the table.

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
    LC_ALL = "lc_all"
    UMASK = "umask"
    USER = "user"
    HOME = "home"
    CPUS = "cpus"
    CLOCK = "clock"
    ENV = "env"
    FILEORDER = "fileorder"


EXPERIMENT_HOSTNAME = "kabuild-experiment"
EXPERIMENT_DOMAIN = "experiment.kabuild.invalid"
EXPERIMENT_TIMEZONE = "Pacific/Kiritimati"  # UTC+14: as far from UTC as a real zone gets, so the date moves too
EXPERIMENT_LOCALE = "de_DE.UTF-8"  # generated in every build image (containers/common/install-contract.sh)
EXPERIMENT_UMASK = "0002"
EXPERIMENT_HOME = "/tmp"
EXPERIMENT_FAKETIME = "+400d"  # more than a year ahead; SOURCE_DATE_EPOCH stays what it is
NOISE = ("KABUILD_NOISE", "experiment-1f8c2a")


def _hostname(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, hostname=EXPERIMENT_HOSTNAME) if vary else spec


def _domain(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, domainname=EXPERIMENT_DOMAIN) if vary else spec


def _timezone(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, timezone=EXPERIMENT_TIMEZONE) if vary else spec


def _locale(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, locale=EXPERIMENT_LOCALE) if vary else spec


def _lc_all(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, lc_all=EXPERIMENT_LOCALE) if vary else spec


def _umask(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, umask=EXPERIMENT_UMASK) if vary else spec


def _user(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, user=ALT_USER) if vary else spec


def _home(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, home=EXPERIMENT_HOME) if vary else spec


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
    return dataclasses.replace(spec, faketime=EXPERIMENT_FAKETIME) if vary else spec


def _env(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, extra_env=spec.extra_env + (NOISE,)) if vary else spec


def _fileorder(spec: BuildSpec, vary: bool) -> BuildSpec:
    return dataclasses.replace(spec, reverse_context=True) if vary else spec


def _home_of(spec: BuildSpec) -> str:
    return spec.home or spec.user.home


def _noise(spec: BuildSpec) -> str | None:
    return dict(spec.extra_env).get(NOISE[0])


@dataclasses.dataclass(frozen=True)
class Definition:
    """One variation, declared once (after reprotest): the CLI help, the report's variation rows,
    the README table and the evidence search all read this."""

    variation: Variation
    description: str  # one line, for --help
    sets: str  # exactly what it changes in build 2: environment variables, container settings
    control: str  # build 1's value, as documented
    experiment: str  # build 2's value, as documented
    transform: Callable[[BuildSpec, bool], BuildSpec]
    value: Callable[[BuildSpec], str]  # the value a spec carries, for the report
    # How the value can show in a package's bytes, position by position between the control and the
    # experiment spec (kabuild.compare.evidence pairs them); None: the control has no such value.
    forms: Callable[[BuildSpec], tuple[str | None, ...]] = lambda spec: ()
    default: bool = True
    note: str = ""  # for the README: why it is not in the default set, or what it cannot show


TABLE: tuple[Definition, ...] = (
    Definition(Variation.HOSTNAME, "hostname kabuild-build -> kabuild-experiment",
               "container hostname (uname -n, /proc/sys/kernel/hostname)", "kabuild-build", EXPERIMENT_HOSTNAME,
               _hostname, lambda s: s.hostname, lambda s: (s.hostname,)),
    Definition(Variation.DOMAIN, "NIS domain name kabuild.internal -> experiment.kabuild.invalid",
               "container domain name (domainname, /proc/sys/kernel/domainname)", "kabuild.internal",
               EXPERIMENT_DOMAIN, _domain, lambda s: s.domainname, lambda s: (s.domainname,)),
    Definition(Variation.TIMEZONE, "TZ UTC -> Pacific/Kiritimati (UTC+14)", "TZ", "UTC",
               f"{EXPERIMENT_TIMEZONE} (UTC+14)", _timezone, lambda s: s.timezone, lambda s: (s.timezone,)),
    Definition(Variation.LOCALE, "LANG C.UTF-8 -> de_DE.UTF-8 (LC_ALL stays unset)",
               "LANG only (LC_ALL stays unset, so makepkg's LC_COLLATE=C still orders the members)", "C.UTF-8",
               EXPERIMENT_LOCALE, _locale, lambda s: s.locale, lambda s: (s.locale,)),
    Definition(Variation.LC_ALL, "LC_ALL unset -> de_DE.UTF-8 (strict; not in the default set)", "LC_ALL",
               "unset", EXPERIMENT_LOCALE, _lc_all, lambda s: s.lc_all or "unset",
               lambda s: (s.lc_all or s.locale,), default=False,
               note="strict, as Debian's and reprotest's locale variations are: LC_ALL overrides the LC_COLLATE=C "
                    "makepkg sorts the package members with, so every package whose file names collate "
                    "differently (`pt/` and `pt_BR/`, kernel headers) comes out in another member order; in `all`"),
    Definition(Variation.UMASK, "umask 0022 -> 0002 (makepkg itself resets its umask to 0022)",
               "KABUILD_UMASK (the umask set before makepkg)", "0022", EXPERIMENT_UMASK, _umask,
               lambda s: s.umask, lambda s: (s.umask,),
               note="makepkg resets its own umask to 0022, so this cannot leak into a package; it is varied "
                    "to prove that"),
    Definition(Variation.USER, "builder 1000:1000 -> kabuild-alt 2000:2000",
               "container user uid:gid, USER, LOGNAME (and HOME, unless home is varied too)", "builder 1000:1000",
               f"{ALT_USER.name} {ALT_USER.uid}:{ALT_USER.gid}", _user,
               lambda s: f"{s.user.name} {s.user.uid}:{s.user.gid}",
               lambda s: (s.user.name, f"{s.user.uid}:{s.user.gid}", str(s.user.uid))),
    Definition(Variation.HOME, "HOME /home/<user> -> /tmp", "HOME", "/home/<user>", EXPERIMENT_HOME, _home,
               _home_of, lambda s: (_home_of(s),)),
    Definition(Variation.CPUS, "every CPU of the node (MAKEFLAGS=-jN) -> half of them, or N with cpus=N",
               "MAKEFLAGS=-jN and the container's cpuset", "every CPU of the control node",
               "half of the experiment node's (N with --vary cpus=N)", _cpus, lambda s: str(s.cpus),
               lambda s: (f"-j{s.cpus}", str(s.cpus)),
               note="the report records both counts"),
    Definition(Variation.CLOCK, "real clock -> 400 days ahead (libfaketime)",
               "KABUILD_FAKETIME (libfaketime's FAKETIME, wall clock only: file times stay real)", "real",
               f"{EXPERIMENT_FAKETIME} (400 days ahead)", _clock, lambda s: s.faketime or "real"),
    Definition(Variation.ENV, "extra environment variable KABUILD_NOISE", NOISE[0], "unset", NOISE[1], _env,
               lambda s: _noise(s) or "unset", lambda s: (_noise(s),)),
    Definition(Variation.FILEORDER, "build context written in reverse order (weak: not in the default set)",
               "the order in which the build context is written", "sorted", "reversed", _fileorder,
               lambda s: "reversed" if s.reverse_context else "sorted", default=False,
               note="weak: without disorderfs (FUSE, which needs capabilities kabuild drops) directory order on "
                    "overlay/ext4 does not follow creation order"),
)
DEFINITIONS: dict[Variation, Definition] = {d.variation: d for d in TABLE}
ORDER: tuple[Variation, ...] = tuple(d.variation for d in TABLE)
TRANSFORMS: dict[Variation, Callable[[BuildSpec, bool], BuildSpec]] = {d.variation: d.transform for d in TABLE}
DEFAULT: frozenset[Variation] = frozenset(d.variation for d in TABLE if d.default)
DESCRIPTIONS: dict[Variation, str] = {d.variation: d.description for d in TABLE}


@dataclasses.dataclass(frozen=True)
class Row:
    """One applied variation as a report shows it: what it sets, and the values both builds had."""

    name: str
    sets: str
    control: str
    experiment: str


def rows(control: BuildSpec, experiment: BuildSpec, selected: frozenset[Variation]) -> tuple[Row, ...]:
    """The report's variation rows: from the table, with the values the two specs really carried."""
    return tuple(Row(d.variation.value, d.sets, d.value(control), d.value(experiment))
                 for d in TABLE if d.variation in selected)


def help_text() -> str:
    """``--vary``'s help, from :data:`TABLE`."""
    known = "; ".join(f"{d.variation.value}: {d.description} [sets {d.sets}]" for d in TABLE)
    return ("Variations between build 1 and build 2: '+x,-y' edits the default set, 'x,y' names the set, "
            "'all' or 'none'; 'cpus=N' gives the experiment N CPUs. Default: " + ",".join(ordered(DEFAULT))
            + ". Known: " + known + ".")


def markdown_table() -> str:
    """The README's variation table, rendered from :data:`TABLE` (a unit test keeps them equal)."""
    out = ["| name | what build 2 changes | control → experiment | default |", "|---|---|---|---|"]
    for d in TABLE:
        change = f"`{d.control}` → `{d.experiment}`"
        note = f" ({d.note})" if d.note else ""
        out.append(f"| {d.variation.value} | {d.sets} | {change}{note} | {'yes' if d.default else 'no'} |")
    return "\n".join(out) + "\n"


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
        "lc_all": spec.lc_all or "unset",
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
