"""Known causes of a difference, each with its fix: a small table, matched only against evidence found.

A hint is given only when the evidence search (:mod:`kabuild.compare.evidence`) found what the cause
leaves behind (its finding is quoted as the hint's evidence), never because a variation was applied
or a package looks like a kernel.  The README lists the table (``kabuild/compare/hints.py``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

from kabuild.compare.explanation import Explanation, Finding, FindingKind, Hint

# init/version.c and include/generated/compile.h: "Linux version 6.12.107 (user@host) ... #1 SMP <date>"
_KERNEL_TEXT = re.compile(r"Linux version |UTS_VERSION|LINUX_COMPILE_(?:BY|HOST)|#\d+ (?:SMP|PREEMPT)")
_KERNEL_MEMBER = re.compile(r"(?:^|/)(?:vmlinu[xz][^/]*|bzImage|Image(?:\.gz)?|compile\.h|utsversion\.h)$")
_KERNEL_VARIATIONS = {"user", "hostname", "timezone", "clock", "domain"}


def _first(found: Explanation, test: Callable[[Finding], bool]) -> Finding | None:
    return next((f for f in found.findings if test(f)), None)


def _kernel_version(e: Explanation) -> Finding | None:
    def test(f: Finding) -> bool:
        if f.kind not in (FindingKind.VALUE, FindingKind.DATE):
            return False
        if not (set(f.variations) & _KERNEL_VARIATIONS or f.own_time):
            return False
        return bool(_KERNEL_TEXT.search(f.context) or _KERNEL_MEMBER.search(f.member))
    return _first(e, test)


def _member_order(e: Explanation) -> Finding | None:
    return _first(e, lambda f: f.kind is FindingKind.ORDER and bool(f.variations))


def _gzip_time(e: Explanation) -> Finding | None:
    return _first(e, lambda f: f.kind is FindingKind.GZIP and f.what.startswith("gzip header time"))


def _gzip_name(e: Explanation) -> Finding | None:
    return _first(e, lambda f: f.kind is FindingKind.GZIP and f.what == "gzip header file name")


def _build_path(e: Explanation) -> Finding | None:
    return _first(e, lambda f: f.kind is FindingKind.VALUE and bool({"home", "user"} & set(f.variations))
                  and (f.build2.startswith("/") or f.build1.startswith("/")))


def _build_time(e: Explanation) -> Finding | None:
    return _first(e, lambda f: f.own_time)


@dataclass(frozen=True)
class KnownCause:
    name: str
    pattern: str  # what the evidence must show, for the README
    hint: str  # the fix, one line
    finds: Callable[[Explanation], Finding | None]


TABLE: tuple[KnownCause, ...] = (
    KnownCause("kernel version string",
               "a kernel image or compile.h whose version string differs by user, host, timezone or date",
               "the kernel writes its build user, host and time into its version string: export "
               "KBUILD_BUILD_USER, KBUILD_BUILD_HOST and KBUILD_BUILD_TIMESTAMP (from SOURCE_DATE_EPOCH) in the "
               "PKGBUILD", _kernel_version),
    KnownCause("member order", "the members in another order, build 1 in C (bytewise) order, LC_ALL set in build 2",
               "makepkg sorts package members with LC_COLLATE=C, which LC_ALL overrides: leave LC_ALL unset "
               "where makepkg runs (set LANG instead)", _member_order),
    KnownCause("gzip header time", "a gzip member whose compressed data is the same and whose header time differs",
               "gzip records the file's time in its header: compress with gzip -n, or set the file's time from "
               "SOURCE_DATE_EPOCH", _gzip_time),
    KnownCause("gzip header name", "a gzip member whose header file name differs",
               "gzip records the file's name in its header: compress with gzip -n", _gzip_name),
    KnownCause("embedded build path", "a home or user path of build 2 where build 1 has its own",
               "the package embeds a path of the build environment: map it away (-ffile-prefix-map=OLD=NEW) or "
               "keep $HOME and the build directory out of the installed files", _build_path),
    KnownCause("build time", "a date or time in the bytes that is when each build ran",
               "the build writes the time it ran, so it differs even with no variation: take the time from "
               "SOURCE_DATE_EPOCH instead", _build_time),
)


def hints(found: Explanation) -> tuple[Hint, ...]:
    out = []
    for cause in TABLE:
        f = cause.finds(found)
        if f is not None:
            evidence = f.sentence() + (f" in {f.context!r}" if f.context and f.context != f.build2 else "")
            out.append(Hint(cause.name, cause.hint, evidence))
    return tuple(out)


def with_hints(found: Explanation) -> Explanation:
    return dataclasses.replace(found, hints=hints(found))


def markdown_table() -> str:
    """The README's table of known causes, from :data:`TABLE`."""
    out = ["| cause | the evidence it needs | hint |", "|---|---|---|"]
    out += [f"| {c.name} | {c.pattern} | {c.hint} |" for c in TABLE]
    return "\n".join(out) + "\n"
