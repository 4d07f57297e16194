"""The board over ssh: commands, file transfer and the board-side install lock.

Every connection uses key authentication only (``BatchMode=yes``), strict host key
checking against the manifest's ``known_hosts`` (or ssh's own), and a connect timeout.
Commands go through :func:`kabuild.process.run` (argument lists, a timeout each).
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
from dataclasses import dataclass

from kabuild import tools
from kabuild.config.install import Install
from kabuild.errors import RefusalError, ToolError
from kabuild.process import run

LOCK_DIR = "/var/lib/kabuild/install.lock"  # mkdir is atomic: one install at a time per board
CACHE_DIR = "/var/cache/kabuild/pkg"  # packages kabuild uploaded (current and previous kept)
# kabuild's own directories on a board (uploads, the install lock's parent): an undone install removes
# those it created (Journal.made)
KABUILD_DIRS = ("/var/cache/kabuild", CACHE_DIR, "/var/lib/kabuild")
PACMAN_RUN = "/var/cache/kabuild/pacman"  # .pid of the running transaction; .<id>.log, .<id>.rc of each
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
           text: bool = True, connect_timeout: int | None = None, what: str | None = None) -> subprocess.CompletedProcess:
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
            first = what or script.strip().splitlines()[0][:60]
            raise ToolError(f"{self.host}: `{first}` failed on the board (exit {result.returncode})"
                            f"{': ' + lines[-1] if lines else ''}")
        return result

    def pacman(self, args: str, *, timeout: float = 1800) -> subprocess.CompletedProcess:
        """``pacman ARGS`` on the board, detached from this ssh session and waited for.  An interrupted
        kabuild (Ctrl-C, SIGTERM, a dropped connection) then never stops a transaction half-way, which
        would leave files of two versions and the database locked; :meth:`wait_pacman` waits for it."""
        pid = shlex.quote(f"{PACMAN_RUN}.pid")
        # files of this transaction only: the waiting loop of an interrupted earlier call may still run
        # on the board, and removes its own files when its transaction ends
        run = shlex.quote(f"{PACMAN_RUN}.{secrets.token_hex(4)}")
        inner = (f"echo $$ > {pid}; pacman {args} > {run}.log 2>&1; echo $? > {run}.rc.tmp; "
                 f"mv -f {run}.rc.tmp {run}.rc; rm -f {pid}")
        # (one command a line: `a && b & c` would put a and b in the background too)
        return self.sh(f"mkdir -p \"$(dirname {pid})\" || exit 1\n"
                f"nohup sh -c {shlex.quote(inner)} >/dev/null 2>&1 </dev/null &\n"
                f"while [ ! -e {run}.rc ]; do sleep 0.2; done\nrc=$(cat {run}.rc)\ncat {run}.log >&2\n"
                f"rm -f {run}.rc {run}.log\nexit \"$rc\"",
                timeout=timeout, what=f"pacman {args}"[:80])

    def wait_pacman(self, *, timeout: int = 1800) -> bool:
        """Wait until a pacman transaction kabuild started (see :meth:`pacman`) has ended; True when
        there was one to wait for."""
        run = shlex.quote(PACMAN_RUN)
        out = self.out(f"n=0; waited=; while [ -e {run}.pid ] && kill -0 \"$(cat {run}.pid)\" 2>/dev/null; do "
                       f"waited=1; [ $n -ge {timeout * 5} ] && exit 1; n=$((n+1)); sleep 0.2; done; "
                       "echo ${waited:-0}", timeout=timeout + 60).strip()
        return out == "1"

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
