"""The board over ssh: commands, file transfer and the board-side install lock.

Every connection uses key authentication only (``BatchMode=yes``), strict host key
checking against the manifest's ``known_hosts`` (or ssh's own), and a connect timeout.
Commands go through :func:`kabuild.process.run` (argument lists, a timeout each).
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

from kabuild import tools
from kabuild.config.install import Install
from kabuild.errors import RefusalError, ToolError
from kabuild.process import run

LOCK_DIR = "/var/lib/kabuild/install.lock"  # mkdir is atomic: one install at a time per board
CACHE_DIR = "/var/cache/kabuild/pkg"  # packages kabuild uploaded (current and previous kept)
UNREACHABLE = 255  # ssh's own exit code: connection, authentication or host key failure


class BoardUnreachable(ToolError):
    """ssh could not connect (or the connection dropped)."""


@dataclass(frozen=True)
class Board:
    host: str  # the manifest's host name, for messages
    settings: Install

    def ssh_argv(self, *, connect_timeout: int | None = None) -> list[str]:
        s = self.settings
        argv = [tools.find("ssh"), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={connect_timeout or s.connect_timeout}", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR", "-p", str(s.port)]
        if s.known_hosts is not None:
            argv += ["-o", f"UserKnownHostsFile={s.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if s.identity is not None:
            argv += ["-o", "IdentitiesOnly=yes", "-i", str(s.identity)]
        return argv + [s.ssh]

    def sh(self, script: str, *, timeout: float = 120, check: bool = True, input: bytes | None = None,
           text: bool = True, connect_timeout: int | None = None) -> subprocess.CompletedProcess:
        """Run a POSIX shell script on the board; a failed connection is :class:`BoardUnreachable`."""
        argv = self.ssh_argv(connect_timeout=connect_timeout) + ["--", "sh -c " + shlex.quote(script)]
        result = run(argv, timeout=timeout, check=False, input=input, text=text)
        if result.returncode == UNREACHABLE:
            err = result.stderr if text else result.stderr.decode("utf-8", "replace")
            lines = (err or "").strip().splitlines()
            raise BoardUnreachable(f"{self.host}: cannot reach {self.settings.ssh} port {self.settings.port} over ssh"
                                   f": {lines[-1] if lines else 'connection failed'}")
        if check and result.returncode != 0:
            err = result.stderr if text else result.stderr.decode("utf-8", "replace")
            lines = (err or "").strip().splitlines()
            first = script.strip().splitlines()[0][:60]
            raise ToolError(f"{self.host}: `{first}` failed on the board (exit {result.returncode})"
                            f"{': ' + lines[-1] if lines else ''}")
        return result

    def out(self, script: str, *, timeout: float = 120) -> str:
        return self.sh(script, timeout=timeout).stdout

    def upload(self, data: bytes, path: str, *, mode: str = "0644", timeout: float = 600) -> None:
        """Write ``path`` on the board atomically (temp file, fsync, rename)."""
        q = shlex.quote(path)
        tmp = shlex.quote(path + ".kabuild-tmp")
        self.sh(f"mkdir -p \"$(dirname {q})\" && cat > {tmp} && chmod {mode} {tmp} && sync {tmp} && mv -f {tmp} {q}",
                input=data, text=False, timeout=timeout)

    def read_bytes(self, script: str, *, timeout: float = 600) -> bytes:
        return self.sh(script, text=False, timeout=timeout).stdout

    def sha256(self, path: str) -> str | None:
        q = shlex.quote(path)
        out = self.out(f"if [ -f {q} ]; then sha256sum < {q}; fi").strip()
        return out.split()[0] if out else None

    # -- the board-side lock ------------------------------------------------------------

    def lock(self, install_id: str, started: str) -> None:
        """Take the board's install lock for ``install_id``; refuse when another install holds it."""
        owner = shlex.quote(f"id={install_id}\nstarted={started}\n")
        d = shlex.quote(LOCK_DIR)
        r = self.sh(f"mkdir -p \"$(dirname {d})\" && if mkdir {d} 2>/dev/null; then printf %s {owner} > {d}/owner; "
                    f"echo TAKEN; else cat {d}/owner 2>/dev/null; fi")
        if "TAKEN" in r.stdout:
            return
        held = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        if held.get("id") == install_id:
            return  # ours, from a run that was killed: this run recovers it
        raise RefusalError(
            f"{self.host}: another install holds the board's lock {LOCK_DIR} (install {held.get('id', '?')}, "
            f"started {held.get('started', '?')}); refusing a second concurrent install",
            hint=f"if no install is running, remove {LOCK_DIR} on the board")

    def lock_owner(self) -> str | None:
        out = self.out(f"cat {shlex.quote(LOCK_DIR)}/owner 2>/dev/null || true")
        held = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return held.get("id")

    def unlock(self, install_id: str) -> None:
        if self.lock_owner() == install_id:
            self.sh(f"rm -rf {shlex.quote(LOCK_DIR)}")


def parse_sha256_list(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.strip():
            digest, _, path = line.partition("  ")
            out[path] = digest
    return out
