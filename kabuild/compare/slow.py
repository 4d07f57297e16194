"""What diffoscope leaves out by default, and counting what it left out.

On a kernel its slow commands take minutes (the disassembly of vmlinux took 6 of the 8.5 minutes the
naive kernel's explanation cost), and what they show is nearly always a consequence of a difference
seen elsewhere (a string, a section's bytes, a symbol).  The evidence search names the cause without
them; ``--full-diffoscope`` runs them.
"""

from __future__ import annotations

import re

SLOW_COMMANDS: tuple[tuple[str, str], ...] = (
    ("disassembly", r"^objdump .*--disassemble"),
    ("DWARF debug-info dumps", r"^readelf .*--debug-dump"),
    ("decompilation", r"^(r2|radare2|llvm-objdump) "),
)
_EXCLUDED = re.compile(r"Excluding command '(?P<cmd>.*)' as it matches pattern '(?P<pattern>.*)'$")


def exclude_args(full: bool) -> tuple[str, ...]:
    """diffoscope's arguments that leave out :data:`SLOW_COMMANDS` (none for a full run)."""
    if full:
        return ()
    # --debug: diffoscope names each command it leaves out only there; the report counts them
    return ("--debug", *(a for _, rx in SLOW_COMMANDS for a in ("--exclude-command", rx)))


def excluded(stderr: str) -> tuple[str, tuple[str, ...]]:
    """diffoscope's stderr without its debug lines, and what --exclude-command left out, counted:
    ("disassembly: 14 command(s), e.g. objdump --line-numbers --disassemble ... --section=.text {}", ...)."""
    kept: list[str] = []
    seen: dict[str, dict[str, None]] = {}
    for line in stderr.splitlines():
        m = _EXCLUDED.search(line)
        if m is not None:
            seen.setdefault(m.group("pattern"), {})[m.group("cmd")] = None
        elif " D: " not in line[:40]:
            kept.append(line)
    names = {rx: name for name, rx in SLOW_COMMANDS}
    order = [rx for _, rx in SLOW_COMMANDS]
    cut = tuple(f"{names.get(rx, rx)}: {len(seen[rx])} command(s), e.g. {next(iter(seen[rx]))}"
                for rx in sorted(seen, key=lambda rx: order.index(rx) if rx in order else len(order)))
    return "\n".join(kept) + ("\n" if kept else ""), cut
