"""Publish: the acceptance gate, signing, and an atomically swapped pacman repository.

Only packages that the latest acceptance report calls reproducible *and* in parity
with the reference are published, and only if the bytes about to be signed are
exactly the bytes the report names (hashed again here, and once more after they
are copied into the staging area).  Anything else is refused (exit 3) with the
reason per package, before any signing or repository change.  There is no
override.

Repository layout of a local destination ``<dest>``::

    <dest>                  -> <dest-name>.states/<state-id>     (relative symlink)
    <dest>.states/<state-id>/
        <repo>.db.tar.gz  <repo>.db.tar.gz.sig  <repo>.db -> ...  <repo>.db.sig -> ...
        <repo>.files.tar.gz  <repo>.files.tar.gz.sig  <repo>.files -> ...  <repo>.files.sig -> ...
        <pkg>.pkg.tar.zst  <pkg>.pkg.tar.zst.sig  ...
    <dest>.states/.lock     (flock: one publish at a time)

A publish hard-links the live state into ``<dest>.states/.staging-<id>/``, copies
the new packages in, signs them, runs pacman's own ``repo-add`` (which replaces
the database files by rename, so the live state's hard links are never written
to), prunes package files beyond the last ``keep`` versions per package name,
signs the databases, verifies every signature, fsyncs, renames the staging
directory to ``<dest>.states/<id>`` and finally swaps the ``<dest>`` symlink with
``rename(2)``.  A crash or kill at any point leaves ``<dest>`` pointing at a
complete state, the old one or the new one; leftovers are removed by the next
publish.  A plain (non-symlink) directory at ``<dest>`` is refused, unless it is
empty.

A remote destination ``ssh://[user@]host[:port]/abs/path`` is built the same way
in a local cache (``build/.publish-cache/``), mirrored from the remote's live
state with rsync; the new state is rsynced to ``path.states/.staging-<id>/`` with
``--link-dest`` to the live state, renamed, and swapped with ``ln -sfn`` + ``mv -T``
on the remote.  The remote needs a POSIX shell, GNU coreutils and rsync.

Test hook: ``KABUILD_PUBLISH_CRASH_AT=<step>`` makes publish SIGKILL itself at
that step (see :data:`CRASH_STEPS`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Iterable, Sequence
from urllib.parse import urlparse

from .errors import ChecksumError, ConfigError, RefusalError, ToolError
from .files import digest_file
from .run import run, tool_path

if TYPE_CHECKING:  # pragma: no cover
    from .signing import Signer

REPORT_KIND = "kabuild-acceptance-report"
REPORT_SCHEMA = 1
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
SSH_CONFIG_ENV = "KABUILD_SSH_CONFIG"  # optional ssh_config file for ssh:// destinations (ssh -F)

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._+-]*")
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX128 = re.compile(r"[0-9a-f]{128}")
PKGFILE_RE = re.compile(
    r"(?P<name>[A-Za-z0-9@_+][A-Za-z0-9@._+-]*)-(?P<ver>[^-/\s]+)-(?P<rel>[^-/\s]+)-(?P<arch>[^-/\s]+)"
    r"\.pkg\.tar(?:\.(?:zst|xz|gz|bz2|lz4|lrz|lzo|Z))?"
)


# --------------------------------------------------------------------------- the gate


@dataclass(frozen=True)
class Candidate:
    name: str
    path: Path
    sha256: str
    b2sum: str


@dataclass(frozen=True)
class Refusal:
    subject: str  # a package name, or "report"
    reason: str


class PublishRefused(RefusalError):
    """The publish gate said no; ``refusals`` lists every package (or the report) and why."""

    def __init__(self, refusals: Sequence[Refusal], total: int):
        self.refusals = tuple(refusals)
        parts = "; ".join(f"{r.subject}: {r.reason}" for r in self.refusals)
        subjects = {r.subject for r in self.refusals if r.subject != "report"}
        scope = f" ({len(subjects)} of {total} package(s))" if subjects and total else ""
        super().__init__(f"publish refused{scope}: {parts}",
                         hint="only packages the latest acceptance report calls reproducible with parity are published; "
                              "there is no override")


def latest_run(root: Path, host: str, baseline_ref: str) -> Path:
    """The run directory ``build/<host>/<ref>/runs/latest`` points at (resolved)."""
    latest = Path(root) / "build" / host / baseline_ref / "runs" / "latest"
    if not latest.exists():
        raise RefusalError(f"no acceptance report for {host} ({baseline_ref}): {latest} does not exist; "
                           f"run `kabuild reproduce {host}` first")
    return latest.resolve()


def load_report(run_dir: Path) -> dict:
    path = Path(run_dir) / "report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RefusalError(f"no acceptance report at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RefusalError(f"acceptance report {path} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise RefusalError(f"acceptance report {path} is not a JSON object")
    return data


def _short(h: object) -> str:
    return h[:12] if isinstance(h, str) else repr(h)


def _hashes(entry: object, label: str, reasons: list[str]) -> tuple[str, str, int | None] | None:
    if not isinstance(entry, dict):
        reasons.append(f"{label} is missing from the report")
        return None
    sha, b2, size = entry.get("sha256"), entry.get("b2sum"), entry.get("size")
    if not (isinstance(sha, str) and HEX64.fullmatch(sha) and isinstance(b2, str) and HEX128.fullmatch(b2)):
        reasons.append(f"{label} hashes are missing or malformed in the report")
        return None
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        reasons.append(f"{label} size is malformed in the report")
        return None
    return sha, b2, size


def _relative_path(text: object) -> PurePosixPath | None:
    if not isinstance(text, str) or not text:
        return None
    p = PurePosixPath(text)
    if p.is_absolute() or any(part in ("..", "") for part in p.parts) or "\\" in text:
        return None
    return p


def _check_package(pkg: object, index: int, run_dir: Path) -> tuple[str, list[str], Candidate | None]:
    if not isinstance(pkg, dict):
        return f"packages[{index}]", ["entry is not an object"], None
    name = pkg.get("name")
    subject = name if isinstance(name, str) and name else f"packages[{index}]"
    reasons: list[str] = []
    if not (isinstance(name, str) and NAME_RE.fullmatch(name)):
        reasons.append("package name is missing or invalid")
    file = pkg.get("file")
    m = PKGFILE_RE.fullmatch(file) if isinstance(file, str) else None
    if not m:
        reasons.append(f"package file name {file!r} is not a pacman package file name")
    elif isinstance(name, str) and m.group("name") != name:
        reasons.append(f"package file {file} does not belong to package {name}")

    # The verdicts, as the report states them.
    if pkg.get("reproducible") is not True:
        reasons.append("not reproducible (build1 and build2 differ)")
    parity = pkg.get("parity")
    if parity is None:
        reasons.append("no reference build: parity unknown")
    elif parity is False:
        reasons.append("parity with the reference build failed")
    elif parity is not True:
        reasons.append(f"parity is malformed in the report ({parity!r})")
    verdict = pkg.get("verdict")
    if not reasons and verdict != "accepted":
        reasons.append(f"report verdict is {verdict!r}, not 'accepted'")

    # The hashes: build1 must equal build2, and the file on disk must be build1.
    b1 = _hashes(pkg.get("build1"), "build1", reasons)
    b2 = _hashes(pkg.get("build2"), "build2", reasons)
    if b1 and b2 and (b1[0] != b2[0] or b1[1] != b2[1] or (b1[2] is not None and b2[2] is not None and b1[2] != b2[2])):
        if pkg.get("reproducible") is True:
            reasons.append("build1 and build2 hashes differ although the report says reproducible")
        else:
            reasons.append("build1 and build2 hashes differ")
    candidate = None
    if b1:
        rel = _relative_path(pkg["build1"].get("path"))
        if rel is None:
            reasons.append(f"build1 path {pkg['build1'].get('path')!r} is not a path inside the run directory")
        elif isinstance(file, str) and rel.name != file:
            reasons.append(f"build1 path {rel} does not name the package file {file}")
        else:
            path = Path(run_dir) / rel
            if not path.is_file():
                reasons.append(f"artifact missing: {rel} is not in the run directory")
            else:
                try:
                    actual = digest_file(path)
                except OSError as exc:
                    reasons.append(f"artifact {rel} is unreadable: {exc.strerror or exc}")
                else:
                    if actual.sha256 != b1[0] or actual.b2sum != b1[1] or (b1[2] is not None and actual.size != b1[2]):
                        reasons.append(f"artifact {rel} does not match the report (sha256 {_short(actual.sha256)}, "
                                       f"report says {_short(b1[0])}): modified since the report was written")
                    elif not reasons:
                        candidate = Candidate(name=name, path=path, sha256=actual.sha256, b2sum=actual.b2sum)
    return subject, reasons, (candidate if not reasons else None)


def gate(report: dict, run_dir: Path, lock_hash: str) -> tuple[Candidate, ...]:
    """The publish gate: every package of the report proven publishable, or a PublishRefused (exit 3)."""
    if not isinstance(report, dict) or report.get("kind") != REPORT_KIND or report.get("schema") != REPORT_SCHEMA:
        raise RefusalError(f"publish refused: {Path(run_dir) / 'report.json'} is not a kabuild acceptance report "
                           f"(expected kind {REPORT_KIND!r}, schema {REPORT_SCHEMA})")
    refusals: list[Refusal] = []
    report_lock = report.get("lock_hash")
    if report_lock != lock_hash:
        refusals.append(Refusal("report", f"stale report: made for manifest.lock {_short(report_lock)}, "
                                          f"the current lock is {_short(lock_hash)}; run reproduce again"))
    packages = report.get("packages")
    if not isinstance(packages, list) or not packages:
        refusals.append(Refusal("report", "the report names no packages"))
        packages = []
    candidates: list[Candidate] = []
    seen_names: set[str] = set()
    seen_files: set[str] = set()
    for i, pkg in enumerate(packages):
        subject, reasons, candidate = _check_package(pkg, i, run_dir)
        if isinstance(pkg, dict):
            if pkg.get("name") in seen_names or pkg.get("file") in seen_files:
                reasons.append("listed twice in the report")
                candidate = None
            if isinstance(pkg.get("name"), str):
                seen_names.add(pkg["name"])
            if isinstance(pkg.get("file"), str):
                seen_files.add(pkg["file"])
        if reasons:
            refusals.append(Refusal(subject, ", ".join(reasons)))
        elif candidate is not None:
            candidates.append(candidate)
    if not refusals and report.get("verdict") != "accepted":
        refusals.append(Refusal("report", f"report verdict is {report.get('verdict')!r}, not 'accepted'"))
    if refusals:
        raise PublishRefused(refusals, len(packages))
    return tuple(candidates)


# --------------------------------------------------------------------------- results and helpers


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


@dataclass(frozen=True)
class _PkgFile:
    file: str
    name: str
    version: str  # [epoch:]pkgver-pkgrel


def _parse_pkgfile(file: str) -> _PkgFile | None:
    m = PKGFILE_RE.fullmatch(file)
    if not m:
        return None
    return _PkgFile(file, m.group("name"), f"{m.group('ver')}-{m.group('rel')}")


def _pkginfo(path: Path) -> dict[str, str]:
    out = run([tool_path("bsdtar", "libarchive-tools"), "-xOf", path, ".PKGINFO"], timeout=300).stdout
    info: dict[str, str] = {}
    for line in out.splitlines():
        if " = " in line and not line.startswith("#"):
            key, _, value = line.partition(" = ")
            info.setdefault(key.strip(), value.strip())
    if "pkgname" not in info or "pkgver" not in info:
        raise RefusalError(f"{path.name} is not a pacman package (no pkgname/pkgver in .PKGINFO)")
    return info


def _vercmp(a: str, b: str) -> int:
    out = run([tool_path("vercmp", "pacman-package-manager"), a, b], timeout=30).stdout.strip()
    try:
        return int(out)
    except ValueError:
        raise ToolError(f"vercmp printed {out!r} for {a} vs {b}") from None


def _crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _new_state_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            fd = os.open(entry.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(path)


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


@contextlib.contextmanager
def _flock(path: Path, what: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise RefusalError(f"another publish to {what} is running (lock {path})") from None
            raise
        yield


def _db_names(repository: str) -> dict[str, str]:
    return {
        "db": f"{repository}.db.tar.gz",
        "files": f"{repository}.files.tar.gz",
        "db_link": f"{repository}.db",
        "files_link": f"{repository}.files",
    }


def _is_repo_file(repository: str, name: str) -> bool:
    return name.startswith(f"{repository}.db") or name.startswith(f"{repository}.files")


def pacman_conf_for(repository: str, location: str, *, remote: bool) -> str:
    if remote:
        return (f"[{repository}]\nSigLevel = Required\n"
                f"# Server = https://<web server serving {location}>  (pacman cannot fetch over ssh)\n")
    return f"[{repository}]\nSigLevel = Required\nServer = file://{location}\n"


# --------------------------------------------------------------------------- building a state


@dataclass
class _Plan:
    new: list[tuple[Candidate, str, _PkgFile]] = field(default_factory=list)  # candidate, file name, parsed
    unchanged: list[str] = field(default_factory=list)


def _plan(candidates: Sequence[Candidate], current: Path | None, repository: str) -> _Plan:
    """Everything checkable before staging: package metadata, conflicts with the live state, downgrades."""
    plan = _Plan()
    existing = sorted(os.listdir(current)) if current else []
    existing_pkgs = [p for p in (_parse_pkgfile(f) for f in existing) if p]
    names: set[str] = set()
    files: set[str] = set()
    for c in candidates:
        file = c.path.name
        parsed = _parse_pkgfile(file)
        if parsed is None:
            raise RefusalError(f"{file} is not a pacman package file name")
        if c.name in names or file in files:
            raise RefusalError(f"package {c.name} ({file}) is given twice")
        names.add(c.name)
        files.add(file)
        if _is_repo_file(repository, file):
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
        info = _pkginfo(c.path)
        if info["pkgname"] != c.name or parsed.name != c.name:
            raise RefusalError(f"{file}: .PKGINFO names package {info['pkgname']!r}, expected {c.name!r}")
        if info["pkgver"] != parsed.version:
            raise RefusalError(f"{file}: .PKGINFO says version {info['pkgver']}, the file name says {parsed.version}")
        for old in existing_pkgs:
            if old.name == c.name and _vercmp(old.version, parsed.version) > 0:
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


def _build_state(candidates: Sequence[Candidate], plan: _Plan, current: Path | None, staging: Path, *,
                 repository: str, signer: "Signer", keep: int, progress: Callable[[str], None]) -> list[str]:
    """Fill ``staging`` with the new complete, signed state; return the pruned package files."""
    names = _db_names(repository)
    _link_state(current, staging)
    for c, file, _parsed in plan.new:
        dst = staging / file
        shutil.copyfile(c.path, dst)
        os.chmod(dst, 0o644)
        got = digest_file(dst)
        if got.sha256 != c.sha256 or got.b2sum != c.b2sum:
            raise ChecksumError(f"{file} changed between the gate and staging (sha256 {got.sha256[:12]}, "
                                f"expected {c.sha256[:12]}); nothing was published")
    _crash_point("after-copy")

    for _c, file, _parsed in plan.new:
        progress(f"signing {file}")
        signer.sign_detached(staging / file)
    _crash_point("after-sign-packages")

    # Prune: keep the newest `keep` package files per touched package name.
    pruned: list[str] = []
    touched = {parsed.name for _c, _f, parsed in plan.new}
    for name in sorted(touched):
        versions = [p for p in (_parse_pkgfile(f) for f in os.listdir(staging)) if p and p.name == name]
        versions.sort(key=functools.cmp_to_key(lambda a, b: _vercmp(a.version, b.version)), reverse=True)
        for old in versions[keep:]:
            for path in (staging / old.file, staging / (old.file + ".sig")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            pruned.append(old.file)

    # repo-add replaces the database files by rename: the live state's hard links stay untouched.
    for n in (names["db"], names["files"]):
        for suffix in (".sig", ".old", ".old.sig"):
            with contextlib.suppress(FileNotFoundError):
                (staging / (n + suffix)).unlink()
    for n in (names["db_link"], names["files_link"]):
        for suffix in ("", ".sig"):
            with contextlib.suppress(FileNotFoundError):
                (staging / (n + suffix)).unlink()
    progress(f"updating the {repository} database with repo-add")
    run([tool_path("repo-add", "pacman-package-manager"), "--nocolor", "--quiet", names["db"],
         *[file for _c, file, _p in plan.new]], cwd=staging, timeout=1800)
    for n in (names["db"], names["files"]):
        for suffix in (".old", ".old.sig"):
            with contextlib.suppress(FileNotFoundError):
                (staging / (n + suffix)).unlink()
    with contextlib.suppress(FileNotFoundError):
        (staging / (names["db"] + ".lck")).unlink()
    _crash_point("after-repo-add")

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
    _crash_point("after-sign")

    # Everything signed here was verified right after signing (Signer.sign_detached); every
    # package and database of the state must carry a signature before it can go live.
    for entry in sorted(os.listdir(staging)):
        if (_parse_pkgfile(entry) or entry in (names["db"], names["files"])) and not (staging / (entry + ".sig")).is_file():
            raise ConfigError(f"{entry} in the repository has no signature")
    _fsync_tree(staging)
    return pruned


def _state_files(state: Path) -> tuple[str, ...]:
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
        _rmtree(entry)
    for stale in dest.parent.glob(f".{dest.name}.swap-*"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def _publish_local(candidates, *, repository, dest: Path, signer, keep, progress) -> PublishResult:
    dest = Path(os.path.abspath(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    states = dest.parent / f"{dest.name}.states"
    current, empty_dir = _local_current(dest, states)
    conf = pacman_conf_for(repository, str(dest), remote=False)
    plan = _plan(candidates, current, repository)  # refusals happen here, before anything is touched
    states.mkdir(parents=True, exist_ok=True)
    with _flock(states / ".lock", str(dest)):
        again, empty_dir = _local_current(dest, states)  # again, under the lock
        if again != current:
            current = again
            plan = _plan(candidates, current, repository)
        _clean_leftovers(states, current, dest)  # whatever a killed publish left behind
        if not plan.new and current is not None:
            progress(f"nothing new: {len(plan.unchanged)} package(s) already published in {dest}")
            return PublishResult(str(dest), repository, current.name, False, (), tuple(plan.unchanged), (),
                                 _state_files(current), conf, signer.fingerprint)
        state_id = _new_state_id()
        staging = states / f".staging-{state_id}"
        staging.mkdir(mode=0o755)
        os.chmod(staging, 0o755)
        _crash_point("after-stage")
        try:
            pruned = _build_state(candidates, plan, current, staging, repository=repository, signer=signer,
                                  keep=keep, progress=progress)
            final = states / state_id
            os.rename(staging, final)
            _fsync_dir(states)
        except BaseException:
            with contextlib.suppress(OSError):
                _rmtree(staging)
            raise
        _crash_point("before-swap")
        if empty_dir:
            os.rmdir(dest)
        tmp_link = dest.parent / f".{dest.name}.swap-{state_id}"
        os.symlink(f"{states.name}/{state_id}", tmp_link)
        os.replace(tmp_link, dest)
        _fsync_dir(dest.parent)
        progress(f"repository {repository} now at state {state_id}")
        _crash_point("after-swap")
        _clean_leftovers(states, final, dest)
        return PublishResult(str(dest), repository, state_id, True, tuple(f for _c, f, _p in plan.new),
                             tuple(plan.unchanged), tuple(pruned), _state_files(final), conf, signer.fingerprint)


# --------------------------------------------------------------------------- remote destinations


@dataclass(frozen=True)
class _Remote:
    url: str
    target: str  # [user@]host
    port: int | None
    path: PurePosixPath  # absolute path of the repository symlink

    @property
    def states(self) -> PurePosixPath:
        return self.path.parent / f"{self.path.name}.states"


def parse_remote(destination: str) -> _Remote:
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
    return _Remote(destination, target, port, path)


def _ssh_argv(remote: _Remote) -> list[str]:
    argv = [tool_path("ssh", "openssh-client"), "-o", "BatchMode=yes"]
    cfg = os.environ.get(SSH_CONFIG_ENV)
    if cfg:
        argv += ["-F", cfg]
    if remote.port:
        argv += ["-p", str(remote.port)]
    return argv


def _ssh_env() -> dict[str, str]:
    return {k: os.environ[k] for k in ("SSH_AUTH_SOCK",) if k in os.environ}


def _ssh(remote: _Remote, script: str, *, timeout: float = 300) -> str:
    result = run([*_ssh_argv(remote), remote.target, script], env=_ssh_env(), timeout=timeout, check=False)
    if result.returncode != 0:
        err = (result.stderr or "").strip().splitlines()
        raise ToolError(f"ssh {remote.target} failed (exit {result.returncode}): {err[-1] if err else 'no output'}")
    return result.stdout


def _rsync(remote: _Remote, *args: str, timeout: float = 3600) -> None:
    run([tool_path("rsync", "rsync"), "-e", shlex.join(_ssh_argv(remote)), *args], env=_ssh_env(), timeout=timeout)


def _remote_current(remote: _Remote) -> tuple[str | None, bool]:
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


def _publish_remote(candidates, *, repository, remote: _Remote, signer, keep, root: Path, progress) -> PublishResult:
    conf = pacman_conf_for(repository, f"{remote.target}:{remote.path}", remote=True)
    cache = Path(root) / "build" / ".publish-cache" / hashlib.sha256(remote.url.encode()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    with _flock(cache / ".lock", remote.url):
        for entry in cache.iterdir():
            if entry.name.startswith(".staging-"):
                _rmtree(entry)
        current_id, empty_dir = _remote_current(remote)
        mirror = cache / "mirror"
        if current_id:
            progress(f"mirroring {remote.url} (state {current_id})")
            mirror.mkdir(exist_ok=True)
            _rsync(remote, "-a", "--delete", f"{remote.target}:{remote.states / current_id}/", f"{mirror}/")
        else:
            _rmtree(mirror)
        current = mirror if current_id else None
        plan = _plan(candidates, current, repository)
        states_q = shlex.quote(str(remote.states))
        # Whatever a killed publish left behind: staging directories and states that never went live.
        keep_q = shlex.quote(current_id) if current_id else "''"
        _ssh(remote, f"mkdir -p {states_q} && find {states_q} -mindepth 1 -maxdepth 1 ! -name {keep_q} "
                     f"-exec rm -rf {{}} + && rm -f {shlex.quote(str(remote.path.parent))}/.{shlex.quote(remote.path.name)}.swap-*")
        if not plan.new and current is not None:
            progress(f"nothing new: {len(plan.unchanged)} package(s) already published at {remote.url}")
            return PublishResult(remote.url, repository, current_id, False, (), tuple(plan.unchanged), (),
                                 _state_files(current), conf, signer.fingerprint)
        state_id = _new_state_id()
        staging = cache / f".staging-{state_id}"
        staging.mkdir(mode=0o755)
        os.chmod(staging, 0o755)
        _crash_point("after-stage")
        pruned = _build_state(candidates, plan, current, staging, repository=repository, signer=signer,
                              keep=keep, progress=progress)
        progress(f"uploading state {state_id} to {remote.url}")
        link_dest = [f"--link-dest=../{current_id}"] if current_id else []
        _rsync(remote, "-a", *link_dest, f"{staging}/", f"{remote.target}:{remote.states / ('.staging-' + state_id)}/")
        q = shlex.quote
        rstaging = q(str(remote.states / f".staging-{state_id}"))
        rfinal = q(str(remote.states / state_id))
        _ssh(remote, f"set -e; sync -f {rstaging} 2>/dev/null || sync; mv -T {rstaging} {rfinal}")
        _crash_point("before-swap")
        tmp_link = q(str(remote.path.parent / f".{remote.path.name}.swap-{state_id}"))
        rmdir = f"rmdir {q(str(remote.path))}; " if empty_dir else ""
        _ssh(remote, f"set -e; {rmdir}ln -sfn {q(f'{remote.states.name}/{state_id}')} {tmp_link}; "
                     f"mv -T {tmp_link} {q(str(remote.path))}; sync -f {q(str(remote.path.parent))} 2>/dev/null || true")
        progress(f"repository {repository} now at state {state_id} on {remote.target}")
        _crash_point("after-swap")
        _ssh(remote, f"find {states_q} -mindepth 1 -maxdepth 1 ! -name {q(state_id)} -exec rm -rf {{}} +; "
                     f"rm -f {q(str(remote.path.parent))}/.{q(remote.path.name)}.swap-*")
        files = _state_files(staging)
        _rmtree(mirror)
        os.rename(staging, mirror)
        return PublishResult(remote.url, repository, state_id, True, tuple(f for _c, f, _p in plan.new),
                             tuple(plan.unchanged), tuple(pruned), files, conf, signer.fingerprint)


# --------------------------------------------------------------------------- entry point


def publish(candidates: Iterable[Candidate], *, repository: str, destination: str, signer: "Signer", keep: int,
            root: Path, progress: Callable[[str], None] = lambda m: None) -> PublishResult:
    """Sign ``candidates`` (from :func:`gate`) and make them live in ``repository`` at ``destination``.

    ``destination`` is a directory (relative to ``root`` unless absolute) or ssh://[user@]host[:port]/path.
    """
    candidates = tuple(candidates)
    crash = os.environ.get(CRASH_ENV)
    if crash and crash not in CRASH_STEPS:
        raise ConfigError(f"{CRASH_ENV}={crash!r}: expected one of {', '.join(CRASH_STEPS)}")
    if not NAME_RE.fullmatch(repository or ""):
        raise ConfigError(f"invalid repository name {repository!r}")
    if not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"keep must be at least 1, got {keep!r}")
    if not candidates:
        raise RefusalError("publish refused: no packages passed the gate")
    if not destination:
        raise ConfigError("no publish destination configured (publish.destination in the manifest)")
    if destination.startswith("ssh://"):
        return _publish_remote(candidates, repository=repository, remote=parse_remote(destination), signer=signer,
                               keep=keep, root=Path(root), progress=progress)
    if "://" in destination:
        u = urlparse(destination)
        if u.scheme != "file" or u.netloc not in ("", "localhost"):
            raise ConfigError(f"destination {destination!r}: expected a directory or ssh://host/path")
        destination = u.path
    dest = Path(os.path.expanduser(destination))
    if not dest.is_absolute():
        dest = Path(root) / dest
    return _publish_local(candidates, repository=repository, dest=dest, signer=signer, keep=keep, progress=progress)
