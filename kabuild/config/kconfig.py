"""What a manifest may ask of the kernel's configuration: a non-interactive make target, and
fragments that are Kconfig lines and nothing else.

Both are checked when the manifest is read, so a target that would wait for a terminal (or pick
options at random) and a fragment that merge_config.sh would half-read are refused before any
container starts, with the file and line.
"""

from __future__ import annotations

import re

# Targets that write a whole .config from the tree alone, without a terminal.
FIXED_TARGETS = ("defconfig", "tinyconfig", "allnoconfig", "allyesconfig", "allmodconfig", "alldefconfig",
                 "olddefconfig")
BOARD_TARGET = re.compile(r"[a-z0-9][a-z0-9_.-]*_defconfig")  # arch/<arch>/configs/<board>_defconfig
# Why the other well-known targets are refused.
REFUSED_TARGETS = {
    "config": "asks every question on the terminal",
    "menuconfig": "is an interactive menu",
    "nconfig": "is an interactive menu",
    "xconfig": "is an interactive (Qt) program",
    "gconfig": "is an interactive (GTK) program",
    "oldconfig": "asks about every new option on the terminal",
    "syncconfig": "asks about every new option on the terminal",
    "randconfig": "picks options at random: never reproducible",
    "localmodconfig": "reads the modules loaded on the build machine: never reproducible",
    "localyesconfig": "reads the modules loaded on the build machine: never reproducible",
    "listnewconfig": "lists options, it writes no configuration",
    "helpnewconfig": "lists options, it writes no configuration",
    "savedefconfig": "writes a defconfig from an existing .config, not a configuration",
}
MAX_FRAGMENT = 1 << 20  # bytes; a real fragment is a few KiB

_NAME = r"CONFIG_[A-Za-z0-9_]+"
_VALUE = r'(?:[ymn]|"(?:[^"\\]|\\.)*"|-?[0-9]+|0[xX][0-9a-fA-F]+)'
_SET = re.compile(rf"{_NAME}={_VALUE}")


def target_problem(target: str) -> str | None:
    """Why ``target`` is not a kconfig target kabuild runs, or None."""
    if target in FIXED_TARGETS or BOARD_TARGET.fullmatch(target):
        return None
    why = REFUSED_TARGETS.get(target, "is not a configuration target kabuild knows to be non-interactive")
    return (f"{target!r} {why}; expected one of {', '.join(FIXED_TARGETS)} or <board>_defconfig "
            "(options of your own go in fragments)")


def fragment_problem(data: bytes) -> tuple[int | None, str] | None:
    """(line or None, what is wrong) when ``data`` is not a Kconfig fragment, or None.

    A fragment is what merge_config.sh reads: ``CONFIG_X=y|m|n|"text"|number``, comments (among them
    ``# CONFIG_X is not set``) and blank lines, with Unix line endings."""
    if len(data) > MAX_FRAGMENT:
        return None, f"is {len(data)} bytes; a fragment is at most {MAX_FRAGMENT} (is it a fragment at all?)"
    nul = data.find(b"\0")
    if nul >= 0:
        return None, f"is binary (a NUL byte at offset {nul}), not Kconfig lines"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"is not UTF-8 text ({e.reason} at byte {e.start})"
    for number, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            return number, "ends in CR LF: save the fragment with Unix line endings (merge_config.sh would keep the CR)"
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or _SET.fullmatch(stripped):
            continue
        shown = stripped if len(stripped) <= 60 else stripped[:59] + "…"
        return number, (f"expected CONFIG_NAME=y|m|n|\"text\"|number, '# CONFIG_NAME is not set' or a comment, "
                        f"got {shown!r}")
    return None
