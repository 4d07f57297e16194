"""The one helper that runs external commands: argument lists, explicit environment, timeout."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import ToolError

log = logging.getLogger("kabuild")

# A minimal environment: no locale, timezone or other noise leaks from the caller.
BASE_ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def tool_path(name: str, package: str | None = None) -> str:
    """Find an external tool or raise a ToolError naming the Debian package that provides it."""
    venv_bin = Path(os.environ.get("VIRTUAL_ENV", "")) / "bin" / name if os.environ.get("VIRTUAL_ENV") else None
    if venv_bin and venv_bin.is_file():
        return str(venv_bin)
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":" + BASE_ENV["PATH"])
    if not found:
        pkg = f" (Debian package: {package})" if package else ""
        raise ToolError(f"required tool {name!r} not found{pkg}")
    return found


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float,
    check: bool = True,
    input: bytes | None = None,
    text: bool = True,
) -> subprocess.CompletedProcess:
    args = [os.fspath(a) for a in argv]
    full_env = dict(BASE_ENV)
    if "HOME" in os.environ:
        full_env["HOME"] = os.environ["HOME"]
    if env:
        full_env.update(env)
    log.debug("+ %s", shlex.join(args))
    try:
        result = subprocess.run(
            args, cwd=cwd, env=full_env, timeout=timeout, capture_output=True,
            input=input if not text or input is None else input.decode(), text=text,
        )
    except FileNotFoundError:
        raise ToolError(f"required tool {args[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{args[0]} timed out after {timeout:.0f}s") from None
    if check and result.returncode != 0:
        err = (result.stderr or "").strip().splitlines() if text else []
        tail = err[-1] if err else f"exit {result.returncode}"
        raise ToolError(f"{Path(args[0]).name} failed (exit {result.returncode}): {tail}")
    return result
