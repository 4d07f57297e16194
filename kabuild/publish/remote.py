"""Remote destinations: the state is built locally, rsynced, then swapped on the remote over ssh.

``ssh://[user@]host[:port]/abs/path``: the live state is mirrored into a local cache
(``build/.publish-cache/``), the new state built there like a local one, rsynced to
``path.states/.staging-<id>/`` with ``--link-dest`` to the live state, renamed, and swapped
with ``ln -sfn`` + ``mv -T`` on the remote.  The remote needs a POSIX shell, GNU coreutils
and rsync.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from kabuild import tools
from kabuild.errors import ConfigError, ToolError
from kabuild.process import run
from kabuild.publish.pacman import pacman_conf_for
from kabuild.publish.state import (
    PublishResult,
    build_state,
    crash_point,
    flock,
    new_state_id,
    plan_for,
    rmtree,
    state_files,
)

SSH_CONFIG_ENV = "KABUILD_SSH_CONFIG"  # optional ssh_config file for ssh:// destinations (ssh -F)


@dataclass(frozen=True)
class Remote:
    url: str
    target: str  # [user@]host
    port: int | None
    path: PurePosixPath  # absolute path of the repository symlink

    @property
    def states(self) -> PurePosixPath:
        return self.path.parent / f"{self.path.name}.states"


def parse_remote(destination: str) -> Remote:
    u = urlparse(destination)
    if u.scheme != "ssh" or not u.hostname:
        raise ConfigError(f"destination {destination!r}: expected ssh://[user@]host[:port]/absolute/path")
    try:
        port = u.port
    except ValueError:
        raise ConfigError(f"destination {destination!r}: invalid port") from None
    path = PurePosixPath(u.path or "/")
    if not path.is_absolute() or path == PurePosixPath("/") or ".." in path.parts or not path.name:
        raise ConfigError(f"destination {destination!r}: expected an absolute repository path after the host")
    host = u.hostname if ":" not in u.hostname else f"[{u.hostname}]"
    target = f"{u.username}@{host}" if u.username else host
    return Remote(destination, target, port, path)


def _ssh_argv(remote: Remote) -> list[str]:
    argv = [tools.find("ssh"), "-o", "BatchMode=yes"]
    cfg = os.environ.get(SSH_CONFIG_ENV)
    if cfg:
        argv += ["-F", cfg]
    if remote.port:
        argv += ["-p", str(remote.port)]
    return argv


def _ssh_env() -> dict[str, str]:
    return {k: os.environ[k] for k in ("SSH_AUTH_SOCK",) if k in os.environ}


def _ssh(remote: Remote, script: str, *, timeout: float = 300) -> str:
    result = run([*_ssh_argv(remote), remote.target, script], env=_ssh_env(), timeout=timeout, check=False)
    if result.returncode != 0:
        err = (result.stderr or "").strip().splitlines()
        raise ToolError(f"ssh {remote.target} failed (exit {result.returncode}): {err[-1] if err else 'no output'}")
    return result.stdout


def _rsync(remote: Remote, *args: str, timeout: float = 3600) -> None:
    run([tools.find("rsync"), "-e", shlex.join(_ssh_argv(remote)), *args], env=_ssh_env(), timeout=timeout)


def _remote_current(remote: Remote) -> tuple[str | None, bool]:
    q = shlex.quote(str(remote.path))
    out = _ssh(remote, f"if [ -L {q} ]; then printf 'link %s\\n' \"$(readlink {q})\"; "
                       f"elif [ -d {q} ]; then if [ -z \"$(ls -A {q})\" ]; then echo empty; else echo dir; fi; "
                       f"elif [ -e {q} ]; then echo other; else echo none; fi").strip()
    if out == "none":
        return None, False
    if out == "empty":
        return None, True
    if out.startswith("link "):
        parts = PurePosixPath(out[5:]).parts
        if len(parts) == 2 and parts[0] == remote.states.name and not parts[1].startswith("."):
            return parts[1], False
        raise ConfigError(f"remote destination {remote.url} is a symlink to {out[5:]}, not managed by kabuild")
    raise ConfigError(f"remote destination {remote.url} exists and is not a kabuild repository "
                      f"(a symlink into {remote.states.name}/); move it away")


def publish_remote(candidates, *, repository, remote: Remote, signer, keep, root: Path, progress,
                   arch: str | None = None) -> PublishResult:
    conf = pacman_conf_for(repository, f"{remote.target}:{remote.path}", remote=True)
    cache = Path(root) / "build" / ".publish-cache" / hashlib.sha256(remote.url.encode()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    with flock(cache / ".lock", remote.url):
        for entry in cache.iterdir():
            if entry.name.startswith(".staging-"):
                rmtree(entry)
        current_id, empty_dir = _remote_current(remote)
        mirror = cache / "mirror"
        if current_id:
            progress(f"mirroring {remote.url} (state {current_id})")
            mirror.mkdir(exist_ok=True)
            _rsync(remote, "-a", "--delete", f"{remote.target}:{remote.states / current_id}/", f"{mirror}/")
        else:
            rmtree(mirror)
        current = mirror if current_id else None
        plan = plan_for(candidates, current, repository, arch)
        states_q = shlex.quote(str(remote.states))
        # Whatever a killed publish left behind: staging directories and states that never went live.
        keep_q = shlex.quote(current_id) if current_id else "''"
        _ssh(remote, f"mkdir -p {states_q} && find {states_q} -mindepth 1 -maxdepth 1 ! -name {keep_q} "
                     f"-exec rm -rf {{}} + && rm -f {shlex.quote(str(remote.path.parent))}/.{shlex.quote(remote.path.name)}.swap-*")
        if not plan.new and current is not None and current_id:
            progress(f"nothing new: {len(plan.unchanged)} package(s) already published at {remote.url}")
            return PublishResult(remote.url, repository, current_id, False, (), tuple(plan.unchanged), (),
                                 state_files(current), conf, signer.fingerprint)
        state_id = new_state_id()
        staging = cache / f".staging-{state_id}"
        staging.mkdir(mode=0o755)
        os.chmod(staging, 0o755)
        crash_point("after-stage")
        pruned = build_state(candidates, plan, current, staging, repository=repository, signer=signer,
                              keep=keep, progress=progress)
        progress(f"uploading state {state_id} to {remote.url}")
        link_dest = [f"--link-dest=../{current_id}"] if current_id else []
        _rsync(remote, "-a", *link_dest, f"{staging}/", f"{remote.target}:{remote.states / ('.staging-' + state_id)}/")
        q = shlex.quote
        rstaging = q(str(remote.states / f".staging-{state_id}"))
        rfinal = q(str(remote.states / state_id))
        _ssh(remote, f"set -e; sync -f {rstaging} 2>/dev/null || sync; mv -T {rstaging} {rfinal}")
        crash_point("before-swap")
        tmp_link = q(str(remote.path.parent / f".{remote.path.name}.swap-{state_id}"))
        rmdir = f"rmdir {q(str(remote.path))}; " if empty_dir else ""
        _ssh(remote, f"set -e; {rmdir}ln -sfn {q(f'{remote.states.name}/{state_id}')} {tmp_link}; "
                     f"mv -T {tmp_link} {q(str(remote.path))}; sync -f {q(str(remote.path.parent))} 2>/dev/null || true")
        progress(f"repository {repository} now at state {state_id} on {remote.target}")
        crash_point("after-swap")
        _ssh(remote, f"find {states_q} -mindepth 1 -maxdepth 1 ! -name {q(state_id)} -exec rm -rf {{}} +; "
                     f"rm -f {q(str(remote.path.parent))}/.{q(remote.path.name)}.swap-*")
        files = state_files(staging)
        rmtree(mirror)
        os.rename(staging, mirror)
        return PublishResult(remote.url, repository, state_id, True, tuple(f for _c, f, _p in plan.new),
                             tuple(plan.unchanged), tuple(pruned), files, conf, signer.fingerprint)


