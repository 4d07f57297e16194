"""The daemons tests may leave behind, found from /proc (imported by tests/conftest.py and the tests)."""

from __future__ import annotations

from pathlib import Path


def gpg_agents() -> list[tuple[int, Path]]:
    """Running gpg-agents with the GnuPG home each serves (from its --homedir argument)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and Path(argv[0].decode(errors="replace")).name == "gpg-agent" and b"--homedir" in argv:
            found.append((int(proc.name), Path(argv[argv.index(b"--homedir") + 1].decode(errors="replace"))))
    return found


DAEMONS = ("sshd", "dockerd", "containerd", "gpg-agent")


def daemons_under(base: Path) -> list[tuple[int, str]]:
    """Daemons (sshd, dockerd, containerd, gpg-agent) whose command line names a path under ``base``:
    the ones a test session started for itself."""
    base = base.resolve()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if not argv or Path(argv[0]).name not in DAEMONS:
            continue
        if any(str(base) in a for a in argv[1:]):
            found.append((int(proc.name), " ".join(argv)))
    return found
