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

The modules: :mod:`.gate` (what may be published), :mod:`.pacman` (package metadata,
vercmp, repo-add), :mod:`.state` (the local repository state and its atomic swap),
:mod:`.remote` (ssh destinations).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from kabuild import tools
from kabuild.config.choices import SingleEngine
from kabuild.errors import ConfigError, RefusalError
from kabuild.files import atomic_write
from kabuild.publish.gate import Candidate, PublishRefused, Refusal, gate, latest_run
from kabuild.publish.remote import SSH_CONFIG_ENV, parse_remote, publish_remote
from kabuild.publish.state import CRASH_ENV, CRASH_STEPS, PublishResult, publish_local

if TYPE_CHECKING:  # pragma: no cover
    from kabuild.config.manifest import Manifest
    from kabuild.publish.signing import Signer

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._+-]*")

__all__ = ["CRASH_ENV", "CRASH_STEPS", "SSH_CONFIG_ENV", "Candidate", "PublishRefused", "PublishResult", "Refusal",
           "gate", "latest_run", "publish"]


def publish(candidates: Iterable[Candidate], *, repository: str, destination: str, signer: Signer, keep: int,
            root: Path, progress: Callable[[str], None] = lambda m: None, arch: str | None = None) -> PublishResult:
    """Sign ``candidates`` (from :func:`gate`) and make them live in ``repository`` at ``destination``.

    ``destination`` is a directory (relative to ``root`` unless absolute) or ssh://[user@]host[:port]/path.
    ``arch``: the repository's architecture (the host's); without it, the one of the packages the
    repository already holds.  A package of another architecture (``any`` aside) is refused.
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
        return publish_remote(candidates, repository=repository, remote=parse_remote(destination), signer=signer,
                               keep=keep, root=Path(root), progress=progress, arch=arch)
    if "://" in destination:
        u = urlparse(destination)
        if u.scheme != "file" or u.netloc not in ("", "localhost"):
            raise ConfigError(f"destination {destination!r}: expected a directory or ssh://host/path")
        destination = u.path
    dest = Path(os.path.expanduser(destination))
    if not dest.is_absolute():
        dest = Path(root) / dest
    return publish_local(candidates, repository=repository, dest=dest, signer=signer, keep=keep, progress=progress,
                         arch=arch)


@dataclass(frozen=True)
class HostPublish:
    result: PublishResult
    key_file: Path  # the exported public key, for pacman-key --add
    fingerprint: str
    run_id: str


def publish_host(root: Path, manifest: Manifest, *, gnupghome: Path | None, passphrase: str | None,
                 progress: Callable[[str], None]) -> HostPublish:
    """The gate on the latest report, the signer, the atomic repository, the exported key."""
    from kabuild.compare import acceptance
    from kabuild.inputs import recipes
    from kabuild.inputs.lock import build_dir, require_verified
    from kabuild.publish import signing

    settings = manifest.publish
    if settings is None:
        raise ConfigError(f"{manifest.host}: {manifest.display} has no publish: section")
    if settings.key is None:
        raise ConfigError(f"{manifest.host}: publish.key (signing key fingerprint) is not set in {manifest.display}")
    if settings.destination is None:
        raise ConfigError(f"{manifest.host}: publish.destination is not set in {manifest.display}")
    tools.require("publish", *(("*ssh",) if settings.destination.startswith("ssh://") else ()))
    lock = require_verified(root, manifest)
    run_dir = latest_run(root, manifest.host, manifest.baseline.ref)
    display = display_path(root, run_dir / acceptance.FILENAME)
    report = acceptance.check_origin(acceptance.load(run_dir / acceptance.FILENAME, display), manifest.host,
                                     manifest.baseline.ref, display)
    current = recipes.digests(recipes.pins(manifest))  # the PKGBUILD directories as they are now
    candidates = gate(report, run_dir, lock.promotion_hash, recipes=current,
                      host=(manifest.host, manifest.arch.value),
                      single_engine_allowed=manifest.build.single_engine is SingleEngine.ALLOWED)
    host_dir = build_dir(root, manifest).parent
    with signing.repository_signer(settings.key, host_dir, manifest.host, gnupghome, passphrase,
                                   progress) as (signer, home):
        result = publish(candidates, repository=settings.repository, destination=settings.destination,
                         signer=signer, keep=settings.keep, root=root, progress=progress, arch=manifest.arch.value)
        # The public key next to the host's build directory, so the pacman-key line is concrete.
        key_file = host_dir / f"{settings.repository}.asc"
        atomic_write(key_file, signing.export_public(home, signer.fingerprint))
    return HostPublish(result, key_file, signer.fingerprint, report.run_id)


def display_path(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
