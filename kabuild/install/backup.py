"""The backup `kabuild install` takes before it changes a board, and the restores that use it.

``<backup root>/<host>/<replaced version>/`` (``none`` when no package of ours was installed):

    boot.tar        the board's /boot as tar (kernel, initramfs, device trees, boot configuration)
    boot.sha256     sha256sum of every file in it, computed on the board
    pacman-local.tar  the pacman database entries of the replaced packages
    packages/       the replaced package files (verified with the repository key)
    backup.yaml     what this is, with the sha256 of each file above

It is written to a hidden ``.partial`` directory, verified (the tar extracted here and hashed
against the board's own list), fsynced and renamed into place; a backup is never half there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shlex
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from kabuild.config.yamlio import dump_yaml
from kabuild.errors import ChecksumError, RefusalError
from kabuild.files import atomic_write, digest_file
from kabuild.install.board import CACHE_DIR, Board, parse_sha256_list
from kabuild.install.journal import Journal
from kabuild.publish.state import fsync_tree
from kabuild.timestamps import utc_now

EXCLUDE = ("./lost+found", "./extlinux/kabuild-trial")
PACMAN_LOCAL = "/var/lib/pacman/local"


@dataclass(frozen=True)
class Backup:
    directory: Path

    @property
    def boot_tar(self) -> Path:
        return self.directory / "boot.tar"

    @property
    def boot_list(self) -> Path:
        return self.directory / "boot.sha256"

    @property
    def pacman_tar(self) -> Path:
        return self.directory / "pacman-local.tar"

    def package(self, file: str) -> Path:
        return self.directory / "packages" / file

    def missing(self, journal: Journal) -> list[str]:
        """The files an undo or a rollback of ``journal`` needs that are not in this backup."""
        need = [self.boot_tar, self.boot_list, self.pacman_tar] + [self.package(r.file) for r in journal.replaced]
        return [p.relative_to(self.directory).as_posix() for p in need if not p.is_file()]


def backup_for(journal: Journal, host: str, journal_path: str) -> Backup:
    """The journal's backup, refused (exit 3, the board untouched) when a file the restore needs is gone."""
    backup = Backup(Path(journal.backup))
    gone = backup.missing(journal)
    if gone:
        raise RefusalError(f"{host}: the backup {backup.directory} that putting the board back needs lacks "
                           f"{', '.join(gone)} (journal {journal_path}); nothing was changed on the board: restore "
                           "the backup, or put the board back by hand and remove the journal")
    return backup


def _boot_hashes(board: Board) -> str:
    prune = " -o ".join(f"-path {shlex.quote(e)} -prune" for e in EXCLUDE)
    return board.out(f"cd /boot && find . {prune} -o -type f -print0 | sort -z | xargs -0 -r sha256sum", timeout=600)


def make_backup(board: Board, root: Path, host: str, journal: Journal, previous_dir: Path,
                progress: Callable[[str], None]) -> Backup:
    replaced = journal.replaced[0].version if journal.replaced else "none"
    final = root / host / replaced
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".{final.name}.partial-{journal.id}"
    tmp.mkdir()
    progress(f"backing up /boot and the package database to {final}")
    excludes = " ".join(f"--exclude={shlex.quote(e)}" for e in EXCLUDE)
    (tmp / "boot.tar").write_bytes(board.read_bytes(f"tar -C /boot {excludes} -cf - ."))
    listing = _boot_hashes(board)
    atomic_write(tmp / "boot.sha256", listing)
    _check_tar(tmp / "boot.tar", parse_sha256_list(listing), tmp / ".check")
    entries = " ".join(shlex.quote(f"{r.name}-{r.version}") for r in journal.replaced)
    if entries:
        (tmp / "pacman-local.tar").write_bytes(board.read_bytes(f"tar -C {PACMAN_LOCAL} -cf - {entries}"))
    else:
        (tmp / "pacman-local.tar").write_bytes(board.read_bytes("tar -cf - --files-from /dev/null"))
    (tmp / "packages").mkdir()
    for r in journal.replaced:
        src = previous_dir / r.file
        shutil.copyfile(src, tmp / "packages" / r.file)
        if digest_file(tmp / "packages" / r.file).sha256 != r.sha256:
            raise ChecksumError(f"backup: {r.file} differs from the verified previous package")
    files = {p.relative_to(tmp).as_posix(): digest_file(p).sha256 for p in sorted(tmp.rglob("*")) if p.is_file()}
    atomic_write(tmp / "backup.yaml", dump_yaml({
        "host": host, "replaced": [r.to_dict() for r in journal.replaced], "release": journal.replaced_release,
        "install": journal.id, "created": utc_now(), "files": files}))
    fsync_tree(tmp)
    fsync_tree(tmp / "packages")
    if final.exists():
        old = final.parent / f".{final.name}.old-{journal.id}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
    progress(f"backup verified: {len(parse_sha256_list(listing))} file(s) from /boot, "
             f"{len(journal.replaced)} previous package(s)")
    return Backup(final)


def copy_remote(board: Board, url: str, backup: Backup, host: str, install_id: str,
                progress: Callable[[str], None]) -> str:
    """Copy the verified local backup to ``ssh://[user@]host[:port]/path/<host>/<replaced>/`` (the board's ssh
    settings: known_hosts, identity, timeouts), verify every file's sha256 there, rename it into place."""
    u = urlparse(url)
    target = (f"{u.username}@" if u.username else "") + str(u.hostname)
    remote = Board(f"backup host {u.hostname}", replace(board.settings, ssh=target, port=u.port or 22))
    base = posixpath.join(u.path, host)
    final = posixpath.join(base, backup.directory.name)
    tmp = posixpath.join(base, f".{backup.directory.name}.partial-{install_id}")
    where = f"{url.rstrip('/')}/{host}/{backup.directory.name}"
    progress(f"copying the backup to {where}")
    remote.sh(f"rm -rf {shlex.quote(tmp)} && mkdir -p {shlex.quote(tmp)}")
    local = {}
    for path in sorted(p for p in backup.directory.rglob("*") if p.is_file()):
        rel = path.relative_to(backup.directory).as_posix()
        remote.upload(path.read_bytes(), posixpath.join(tmp, rel), timeout=1800)
        local["./" + rel] = digest_file(path).sha256
    there = parse_sha256_list(remote.out(f"cd {shlex.quote(tmp)} && find . -type f -print0 | sort -z | "
                                         "xargs -0 -r sha256sum", timeout=600))
    if there != local:
        raise ChecksumError(f"the backup copied to {where} does not match the local one; nothing was changed on "
                            "the board")
    q, old = shlex.quote(final), shlex.quote(final + ".old")
    remote.sh(f"rm -rf {old} && if [ -e {q} ]; then mv {q} {old}; fi && mv {shlex.quote(tmp)} {q} && "
              f"rm -rf {old} && sync")
    progress(f"remote backup verified: {len(local)} file(s) in {where}")
    return where


def _check_tar(tar: Path, expected: dict[str, str], scratch: Path) -> None:
    """Extract the copied tar here and compare every file's hash with the board's own list."""
    scratch.mkdir()
    try:
        got: dict[str, str] = {}
        with tarfile.open(tar) as t:
            for member in t.getmembers():
                if not member.isfile():
                    continue
                f = t.extractfile(member)
                assert f is not None
                name = member.name if member.name.startswith("./") else "./" + member.name.lstrip("/")
                got[name] = hashlib.sha256(f.read()).hexdigest()
        if got != expected:
            differ = sorted(set(got.items()) ^ set(expected.items()))
            raise ChecksumError(f"backup of /boot does not match the board's hashes ({differ[0][0]} and "
                                f"{len(differ) - 1} more); nothing was changed on the board")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def restore_boot(board: Board, backup: Backup, progress: Callable[[str], None]) -> None:
    """Make the board's /boot exactly the backed-up one, and verify it."""
    progress(f"restoring /boot from {backup.directory}")
    tmp = f"{CACHE_DIR}/.restore-boot.tar"
    board.upload(backup.boot_tar.read_bytes(), tmp)
    board.sh("cd /boot && find . -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} + && "
             f"tar -xpf {tmp} -C /boot && rm -f {tmp} && sync", timeout=600)
    now = parse_sha256_list(_boot_hashes(board))
    if now != parse_sha256_list(backup.boot_list.read_text()):
        raise ChecksumError(f"{board.host}: /boot differs from the backup after the restore; backup in "
                            f"{backup.directory}")


def restore_packages(board: Board, backup: Backup, journal: Journal, progress: Callable[[str], None]) -> None:
    """Reinstall the replaced packages (or remove the new ones) and restore their database entries."""
    old = {r.name: r for r in journal.replaced}
    if board.wait_pacman():  # an interrupted kabuild left it running: let it finish, then undo it
        progress("waited for the pacman transaction kabuild had started on the board to finish")
    for pkg in journal.packages:
        current = board.out(f"pacman -Q {shlex.quote(pkg.name)} 2>/dev/null || true").split()
        current_version = current[1] if len(current) == 2 else None
        prev = old.get(pkg.name)
        if prev is None:
            if current_version is not None:
                progress(f"removing {pkg.name} {current_version} (it was not installed before)")
                board.pacman(f"-R --noconfirm --noprogressbar {shlex.quote(pkg.name)}")
            continue
        if current_version != prev.version:
            progress(f"reinstalling {prev.file}")
            path = f"{CACHE_DIR}/{prev.file}"
            board.upload(backup.package(prev.file).read_bytes(), path)
            board.pacman(f"-U --noconfirm --noprogressbar {shlex.quote(path)}")
    if journal.replaced:
        entries = " ".join(shlex.quote(f"{PACMAN_LOCAL}/{r.name}-{r.version}") for r in journal.replaced)
        tmp = f"{CACHE_DIR}/.restore-pacman.tar"
        board.upload(backup.pacman_tar.read_bytes(), tmp)
        board.sh(f"rm -rf {entries} && tar -xpf {tmp} -C {PACMAN_LOCAL} && rm -f {tmp} && sync")
    with contextlib.suppress(Exception):
        board.sh(f"rm -f {CACHE_DIR}/.restore-*")
