"""What the new boot entry needs on the board after ``pacman -U``: what pacman's hooks said (the
initramfs they made), and every path the entry names, checked before any reboot."""

from __future__ import annotations

import re
import shlex

from kabuild.errors import RefusalError
from kabuild.install import bootloader
from kabuild.install.board import Board
from kabuild.install.plan import Plan


def hook_lines(output: str) -> list[str]:
    """What pacman said about its hooks: each hook it ran, what they made, and any error or warning
    (a real mkinitcpio says much more; that stays in pacman's log on the board)."""
    out, in_hooks = [], False
    for line in output.splitlines():
        text = line.strip()
        if text.startswith(":: Running") and "hooks" in text:
            in_hooks = True
            continue
        lower = text.lower()
        if (in_hooks and (re.match(r"\(\d+/\d+\) ", text) or "image generation successful" in lower)) \
                or "error" in lower or lower.startswith("warning:"):
            out.append(text)
    return out


def check_boot_paths(board: Board, p: Plan, new_conf: str, hook_lines: list[str]) -> None:
    """Refuse to reboot into an entry that names a file the board does not have (exit 3, then undone)."""
    conf = bootloader.parse(new_conf)
    wanted: dict[str, bool] = {}
    for label in (bootloader.NEW_LABEL, bootloader.FALLBACK_LABEL):
        entry = conf.entry(label)
        if entry is not None:
            for path, is_dir in entry.paths():
                wanted.setdefault(path, is_dir)
    tests = "; ".join(f"[ -{'d' if is_dir else 'f'} {shlex.quote('/boot' + path)} ] || echo {shlex.quote(path)}"
                      for path, is_dir in wanted.items())
    missing = [line for line in board.out(tests + "; true").splitlines() if line.strip()]
    if not missing:
        return
    assert p.kernel is not None
    why = []
    if p.kernel.initrd in missing and p.kernel.preset:
        why.append(f"{p.kernel.initrd} is the image {p.kernel.preset} names, which the package's hook should have "
                   "made")
    errors = [line for line in hook_lines if "error" in line.lower()]
    if errors:
        why.append(f"pacman said: {errors[-1]}")
    raise RefusalError(f"{p.host}: the new boot entry names {', '.join(missing)}, not on the board after pacman -U"
                       + (f" ({'; '.join(why)})" if why else "") + "; refusing to reboot into it")
