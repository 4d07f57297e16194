"""The one helper that runs external commands: argument lists, explicit environment, timeout."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from kabuild import tools
from kabuild.errors import ToolError, ToolFailed
from kabuild.tools import SYSTEM_PATH

log = logging.getLogger("kabuild")

TERM_GRACE = 30.0  # seconds a timed-out tool gets to clean up after SIGTERM
STDERR_TAIL = 20  # lines of a failed tool's stderr kept in its ToolFailed

# A minimal environment: no locale, timezone or other noise leaks from the caller.
BASE_ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "PATH": SYSTEM_PATH}


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float,
    check: bool = True,
    input: bytes | None = None,
    text: bool = True,
    cancel: threading.Event | None = None,
) -> subprocess.CompletedProcess:
    args = [os.fspath(a) for a in argv]
    full_env = dict(BASE_ENV)
    if "HOME" in os.environ:
        full_env["HOME"] = os.environ["HOME"]
    if env:
        full_env.update(env)
    log.debug("+ %s", shlex.join(args))
    try:
        proc = subprocess.Popen(args, cwd=cwd, env=full_env, text=text, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.PIPE if input is not None else None,
                                start_new_session=True)
    except FileNotFoundError:
        raise ToolError(f"required tool {args[0]!r} not found") from None
    data = input if not text or input is None else input.decode()
    try:
        stdout, stderr = _communicate(proc, data, timeout, cancel)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise ToolFailed(tuple(args), None, (), timeout=timeout) from None
    except BaseException:  # Ctrl-C or a bug: never leave the child running
        _stop(proc)
        raise
    result = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise ToolFailed(tuple(args), result.returncode, stderr_tail(result.stderr))
    return result


def _communicate(proc: subprocess.Popen, data, timeout: float, cancel: threading.Event | None):
    """proc.communicate, and with ``cancel`` (a tool run in a worker thread, which Ctrl-C does not
    reach) a check every half second whether the caller gave up on it."""
    if cancel is None:
        return proc.communicate(data, timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        step = min(0.5, deadline - time.monotonic())
        if step <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        try:
            return proc.communicate(data, timeout=step)
        except subprocess.TimeoutExpired:
            if cancel.is_set():
                _stop(proc)
                raise ToolError("stopped: the run was interrupted") from None


def stderr_tail(stderr: str | bytes | None, lines: int = STDERR_TAIL) -> tuple[str, ...]:
    """The last non-empty lines of a tool's stderr, stripped."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else (stderr or "")
    return tuple(line.strip() for line in text.splitlines() if line.strip())[-lines:]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM first, so that a tool with something to undo (mmdebstrap's mounts, a half-written
    file) can clean up; SIGKILL when it does not exit within ``grace`` seconds.

    The child runs in a session of its own (so a shell script's children are stopped with it), and
    the whole process group gets the signals."""
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.communicate(timeout=TERM_GRACE)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.communicate()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def wait_futures(futures, return_when: str = "ALL_COMPLETED"):
    """``concurrent.futures.wait`` that Ctrl-C can always interrupt.

    The kernel may deliver SIGINT to any thread; when a worker thread takes it, a main thread blocked
    in an untimed wait is never woken to raise KeyboardInterrupt, and the run hangs until the work
    ends (a build: hours).  Short timed waits let the main thread run the signal handler promptly."""
    from concurrent.futures import wait

    while True:
        done, pending = wait(futures, timeout=0.25, return_when=return_when)
        if not pending or (return_when == "FIRST_EXCEPTION"
                           and any(not f.cancelled() and f.exception() is not None for f in done)):
            return done, pending


def stop_gpg_agent(gnupghome: Path, *, wait: float = 10.0) -> None:
    """Stop the gpg-agent (and other GnuPG daemons) of one GnuPG home, and wait (at most ``wait``
    seconds) until the agent has exited: ``gpgconf --kill`` only asks, and returns before the agent
    is gone, so a home removed at once, or a caller that checks, would still see it running."""
    home = str(Path(gnupghome).resolve())
    agents = [pid for pid, argv in _processes() if Path(argv[0]).name == "gpg-agent" and _homedir(argv) == home]
    run([tools.find("gpgconf"), "--homedir", home, "--kill", "all"], env={"GNUPGHOME": home},
        check=False, timeout=30)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(_running(pid) for pid in agents):
        time.sleep(0.05)


def _processes() -> list[tuple[int, list[str]]]:
    """(pid, argv) of every running process this one may read."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (argv := _argv(int(entry.name))):
            found.append((int(entry.name), argv))
    return found


def _homedir(argv: list[str]) -> str | None:
    """The resolved ``--homedir`` a GnuPG daemon's command line names."""
    at = argv.index("--homedir") + 1 if "--homedir" in argv else len(argv)
    return str(Path(argv[at]).resolve()) if at < len(argv) else None


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie's command line reads empty)."""
    return bool(_argv(pid))
