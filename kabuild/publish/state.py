"""The repository state: staged, signed, verified, then swapped in with one rename.

See :mod:`kabuild.publish` for the layout.  Test hook: ``KABUILD_PUBLISH_CRASH_AT=<step>``
makes publish SIGKILL itself at that step (see :data:`CRASH_STEPS`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from kabuild.errors import ChecksumError, ConfigError, RefusalError, ToolError
from kabuild.files import atomic_symlink, digest_file
from kabuild.publish.gate import Candidate
from kabuild.publish.pacman import (
    ANY_ARCH,
    PkgFile,
    db_names,
    is_repo_file,
    pacman_conf_for,
    parse_pkgfile,
    pkginfo,
    repo_add,
    vercmp,
)

if TYPE_CHECKING:  # pragma: no cover
    from kabuild.publish.signing import Signer

CRASH_ENV = "KABUILD_PUBLISH_CRASH_AT"
CRASH_STEPS = (
    "after-stage",          # staging directory created, still empty
    "after-copy",           # live state linked in, new packages copied and re-hashed
    "after-sign-packages",  # new packages signed
    "after-repo-add",       # repo-add done, old versions pruned, databases not signed yet
    "after-sign",           # databases signed
    "before-swap",          # staging renamed to a state directory (remote: rsynced and renamed)
    "after-swap",           # destination swapped, old states not removed yet
)


@dataclass(frozen=True)
class PublishResult:
    location: str  # the repository directory (local path) or the ssh:// URL
    repository: str
    state: str  # the state id now live
    changed: bool  # False when every candidate was already published byte-identical
    published: tuple[str, ...]  # package files added by this publish
    unchanged: tuple[str, ...]  # candidates already present with identical bytes
    pruned: tuple[str, ...]  # package files removed (older than the last `keep` versions)
    files: tuple[str, ...]  # every file of the live state
    pacman_conf: str  # lines for pacman.conf
    key: str = ""  # fingerprint of the signing key

    def describe(self) -> str:
        """What a person needs: what happened, where the repository is, and how to use it."""
        if self.changed:
            head = f"published {len(self.published)} package(s) to {self.location} (state {self.state})"
        else:
            head = f"nothing new to publish; {self.location} is unchanged (state {self.state})"
        lines = [head]
        lines += [f"  + {f}" for f in self.published]
        lines += [f"  = {f} (already published)" for f in self.unchanged]
        lines += [f"  - {f} (pruned)" for f in self.pruned]
        lines += ["", "add to /etc/pacman.conf:", "", self.pacman_conf.rstrip("\n")]
        if self.key:
            lines += ["", "and trust the signing key (once):",
                      f"  pacman-key --add <exported public key>  &&  pacman-key --lsign-key {self.key}"]
        return "\n".join(lines)


def crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def new_state_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            fd = os.open(entry.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(path)


def rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


@contextlib.contextmanager
def flock(path: Path, what: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise RefusalError(f"another publish to {what} is running (lock {path})") from None
            raise
        yield




# --------------------------------------------------------------------------- building a state


@dataclass
class Plan:
    new: list[tuple[Candidate, str, PkgFile]] = field(default_factory=list)  # candidate, file name, parsed
    unchanged: list[str] = field(default_factory=list)


def _repository_arch(repository: str, existing: list[PkgFile], arch: str | None) -> tuple[str | None, str]:
    """The one architecture (besides ``any``) the repository holds, and where that is known from."""
    if arch is not None:
        return arch, "the host's architecture"
    for old in existing:
        if old.arch != ANY_ARCH:
            return old.arch, f"it already holds {old.file}"
    return None, ""


def plan_for(candidates: Sequence[Candidate], current: Path | None, repository: str,
             arch: str | None = None) -> Plan:
    """Everything checkable before staging: package metadata, architecture, conflicts with the live
    state, downgrades.  A repository holds one architecture (and ``any``): ``arch``, else the one of
    the packages it already holds, else the one of the first candidate."""
    plan = Plan()
    existing = sorted(os.listdir(current)) if current else []
    existing_pkgs = [p for p in (parse_pkgfile(f) for f in existing) if p]
    repo_arch, known_from = _repository_arch(repository, existing_pkgs, arch)
    names: set[str] = set()
    files: set[str] = set()
    for c in candidates:
        file = c.path.name
        parsed = parse_pkgfile(file)
        if parsed is None:
            raise RefusalError(f"{file} is not a pacman package file name")
        if c.name in names or file in files:
            raise RefusalError(f"package {c.name} ({file}) is given twice")
        names.add(c.name)
        files.add(file)
        if is_repo_file(repository, file):
            raise RefusalError(f"package file {file} would clash with the repository database names")
        if current and (current / file).exists():
            existing_digest = digest_file(current / file)
            if existing_digest.sha256 == c.sha256 and existing_digest.b2sum == c.b2sum:
                plan.unchanged.append(file)
                continue
            raise RefusalError(f"{file} is already published with different contents; "
                               "a rebuild must carry a new pkgver or pkgrel")
        got = digest_file(c.path)
        if got.sha256 != c.sha256 or got.b2sum != c.b2sum:
            raise ChecksumError(f"{file} changed after the publish gate checked it (sha256 {got.sha256[:12]}, "
                                f"expected {c.sha256[:12]}); nothing was published")
        info = pkginfo(c.path)
        if info["pkgname"] != c.name or parsed.name != c.name:
            raise RefusalError(f"{file}: .PKGINFO names package {info['pkgname']!r}, expected {c.name!r}")
        built_for = info.get("arch", "")
        if built_for != parsed.arch:
            raise RefusalError(f"{file}: .PKGINFO says arch {built_for or '(none)'}, the file name says {parsed.arch}")
        if built_for != ANY_ARCH:
            if repo_arch is None:
                repo_arch, known_from = built_for, f"{file} in this publish"
            if built_for != repo_arch:
                raise RefusalError(f"{file} is built for {built_for}, but repository {repository} holds {repo_arch} "
                                   f"packages ({known_from}); a repository never receives a package of another "
                                   "architecture")
        if info["pkgver"] != parsed.version:
            raise RefusalError(f"{file}: .PKGINFO says version {info['pkgver']}, the file name says {parsed.version}")
        for old in existing_pkgs:
            if old.name == c.name and vercmp(old.version, parsed.version) > 0:
                raise RefusalError(f"{file}: the repository already has the newer {old.file}; "
                                   "publishing an older version (a downgrade) is refused")
        plan.new.append((c, file, parsed))
    return plan


def _link_state(current: Path | None, staging: Path) -> None:
    if not current:
        return
    for entry in os.scandir(current):
        src = Path(entry.path)
        dst = staging / entry.name
        if entry.name.startswith(".") or entry.name.endswith((".old", ".old.sig", ".lck")):
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(src), dst)
        elif entry.is_file(follow_symlinks=False):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        # Directories and other entries are not part of a repository state.


def build_state(candidates: Sequence[Candidate], plan: Plan, current: Path | None, staging: Path, *,
                 repository: str, signer: Signer, keep: int, progress: Callable[[str], None]) -> list[str]:
    """Fill ``staging`` with the new complete, signed state; return the pruned package files."""
    names = db_names(repository)
    _link_state(current, staging)
    for c, file, _parsed in plan.new:
        dst = staging / file
        shutil.copyfile(c.path, dst)
        os.chmod(dst, 0o644)
        got = digest_file(dst)
        if got.sha256 != c.sha256 or got.b2sum != c.b2sum:
            raise ChecksumError(f"{file} changed between the gate and staging (sha256 {got.sha256[:12]}, "
                                f"expected {c.sha256[:12]}); nothing was published")
    crash_point("after-copy")

    for _c, file, _parsed in plan.new:
        progress(f"signing {file}")
        signer.sign_detached(staging / file)
    crash_point("after-sign-packages")

    # Prune: keep the newest `keep` package files per touched package name.
    pruned: list[str] = []
    touched = {parsed.name for _c, _f, parsed in plan.new}
    for name in sorted(touched):
        versions = [p for p in (parse_pkgfile(f) for f in os.listdir(staging)) if p and p.name == name]
        versions.sort(key=functools.cmp_to_key(lambda a, b: vercmp(a.version, b.version)), reverse=True)
        for old in versions[keep:]:
            for path in (staging / old.file, staging / (old.file + ".sig")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            pruned.append(old.file)

    repo_add(staging, repository, [file for _c, file, _p in plan.new], progress)
    crash_point("after-repo-add")

    progress(f"signing the {repository} database")
    for tarball, link in ((names["db"], names["db_link"]), (names["files"], names["files_link"])):
        if not (staging / tarball).is_file():
            raise ToolError(f"repo-add did not produce {tarball}")
        signer.sign_detached(staging / tarball)
        if not (staging / link).is_symlink():
            with contextlib.suppress(FileNotFoundError):
                (staging / link).unlink()
            os.symlink(tarball, staging / link)
        with contextlib.suppress(FileNotFoundError):
            (staging / (link + ".sig")).unlink()
        os.symlink(tarball + ".sig", staging / (link + ".sig"))
    crash_point("after-sign")

    # Everything signed here was verified right after signing (Signer.sign_detached); every
    # package and database of the state must carry a signature before it can go live.
    for entry in sorted(os.listdir(staging)):
        if (parse_pkgfile(entry) or entry in (names["db"], names["files"])) and not (staging / (entry + ".sig")).is_file():
            raise ConfigError(f"{entry} in the repository has no signature")
    fsync_tree(staging)
    return pruned


def state_files(state: Path) -> tuple[str, ...]:
    return tuple(sorted(n for n in os.listdir(state) if not n.startswith(".")))


# --------------------------------------------------------------------------- local destinations


def _local_current(dest: Path, states: Path) -> tuple[Path | None, bool]:
    """(live state dir or None, whether an empty plain directory sits at dest)."""
    if dest.is_symlink():
        target = os.readlink(dest)
        parts = PurePosixPath(target).parts
        if len(parts) != 2 or parts[0] != states.name or parts[1].startswith("."):
            raise ConfigError(f"destination {dest} is a symlink to {target}, not to a state in {states.name}/; "
                              "it is not managed by kabuild (move it away)")
        current = states / parts[1]
        if not current.is_dir():
            raise ConfigError(f"destination {dest} points at the missing state {current}; "
                              "repair or remove the symlink")
        return current, False
    if dest.is_dir():
        if any(dest.iterdir()):
            raise ConfigError(f"destination {dest} is a plain directory, not a kabuild repository "
                              f"(a symlink into {states.name}/); move it away and publish again")
        return None, True
    if dest.exists():
        raise ConfigError(f"destination {dest} exists and is not a directory")
    return None, False


def _clean_leftovers(states: Path, keep_state: Path | None, dest: Path) -> None:
    for entry in states.iterdir():
        if entry.name == ".lock" or (keep_state is not None and entry == keep_state):
            continue
        rmtree(entry)
    for stale in dest.parent.glob(f".{dest.name}.swap-*"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def publish_local(candidates, *, repository, dest: Path, signer, keep, progress, arch: str | None = None) -> PublishResult:
    dest = Path(os.path.abspath(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    states = dest.parent / f"{dest.name}.states"
    current, empty_dir = _local_current(dest, states)
    conf = pacman_conf_for(repository, str(dest), remote=False)
    plan = plan_for(candidates, current, repository, arch)  # refusals happen here, before anything is touched
    states.mkdir(parents=True, exist_ok=True)
    with flock(states / ".lock", str(dest)):
        again, empty_dir = _local_current(dest, states)  # again, under the lock
        if again != current:
            current = again
            plan = plan_for(candidates, current, repository, arch)
        _clean_leftovers(states, current, dest)  # whatever a killed publish left behind
        if not plan.new and current is not None:
            progress(f"nothing new: {len(plan.unchanged)} package(s) already published in {dest}")
            return PublishResult(str(dest), repository, current.name, False, (), tuple(plan.unchanged), (),
                                 state_files(current), conf, signer.fingerprint)
        state_id = new_state_id()
        staging = states / f".staging-{state_id}"
        staging.mkdir(mode=0o755)
        os.chmod(staging, 0o755)
        crash_point("after-stage")
        try:
            pruned = build_state(candidates, plan, current, staging, repository=repository, signer=signer,
                                  keep=keep, progress=progress)
            final = states / state_id
            os.rename(staging, final)
            fsync_dir(states)
        except BaseException:
            with contextlib.suppress(OSError):
                rmtree(staging)
            raise
        crash_point("before-swap")
        if empty_dir:
            os.rmdir(dest)
        atomic_symlink(f"{states.name}/{state_id}", dest, tag=state_id)
        fsync_dir(dest.parent)
        progress(f"repository {repository} now at state {state_id}")
        crash_point("after-swap")
        _clean_leftovers(states, final, dest)
        return PublishResult(str(dest), repository, state_id, True, tuple(f for _c, f, _p in plan.new),
                             tuple(plan.unchanged), tuple(pruned), state_files(final), conf, signer.fingerprint)


