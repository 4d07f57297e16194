"""`kabuild install <host>`: put the host's published kernel on the board, with backup, a fallback
boot entry, a heartbeat and automatic rollback.

The steps, each logged (README: "Installing on a board"):

 1. connect over ssh (key auth, strict host key checking, connect timeout) and look (read only):
    running release, installed versions, boot configuration, free space in /boot;
 2. check the free space in /boot (new boot files + the fallback copy + ``min_free_mb``);
 3. take the board's install lock, then back up /boot (kernel, initramfs, device trees, boot
    configuration), the pacman database entries and the previous package files to
    ``<backup>/<host>/<replaced version>/``, verified by hash after copying;
 4. upload the verified package(s), copy the running kernel's files to /boot/kabuild-fallback,
    ``pacman -U``;
 5. check that every file the new boot entries name is on the board (the package's hooks made the
    initramfs), then write the boot entry (new default + previous kernel as fallback) and the trial marker;
 6. reboot; 7. heartbeat: ssh answers and ``uname -r`` is the package's release;
 8. confirm (remove the trial marker), unlock, record the install in the lock.

Every failure before the reboot is undone (the board is left as it was).  After the reboot, a
board that comes back with another release is rolled back over ssh; a board that does not come
back is power-cycled with the manifest's ``power_cycle`` hook, and its firmware boots the
fallback entry (bootcount above bootlimit) -- then it is rolled back.  Without a hook kabuild
says so and a rerun finishes the rollback once the board is back.  A journal
(``build/<host>/install/journal.yaml``) records the step reached, so a rerun after ``kill -9``
undoes or finishes the interrupted install.

The plan and the read-only look at the board are in :mod:`kabuild.install.plan`, the backup and
restores in :mod:`kabuild.install.backup`, the documents in :mod:`kabuild.install.journal`.
Test hook: ``KABUILD_INSTALL_CRASH_AT=<step>`` SIGKILLs kabuild at that step
(:data:`kabuild.install.plan.CRASH_STEPS`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shlex
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kabuild.config.manifest import Manifest
from kabuild.errors import BoardLost, InstallFailed, Interrupted, KabuildError, RefusalError
from kabuild.inputs.lock import read_for, with_install
from kabuild.inputs.records import InstalledPackage, InstallRecord
from kabuild.install import bootloader
from kabuild.install import package as installpkg
from kabuild.install.backup import backup_for, copy_remote, make_backup, restore_boot, restore_packages
from kabuild.install.board import CACHE_DIR, KABUILD_DIRS, Board, BoardUnreachable
from kabuild.install.bootpaths import check_boot_paths, hook_lines
from kabuild.install.journal import Journal, Step, read_journal, write_journal
from kabuild.install.plan import CRASH_ENV, Plan, Probe, install_dir, probe
from kabuild.process import run
from kabuild.publish.pacman import vercmp
from kabuild.timestamps import utc_now, utc_stamp

TOKEN = "/run/kabuild-install-token"  # on the board's tmpfs /run: gone once the board rebooted
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    host: str
    release: str
    packages: tuple[InstalledPackage, ...]
    replaced: str | None
    replaced_release: str
    backup: str
    already: bool = False  # nothing to do: already installed and running
    kernel: bool = True  # the set carried a kernel (it was booted and checked by its heartbeat)

    def summary(self) -> str:
        """One line as a person would say it: "upgraded linux-x 6.1.1-1 → 6.1.2-1 on fresnel: ..."."""
        first = self.packages[0]
        also = f" (with {', '.join(p.name for p in self.packages[1:])})" if len(self.packages) > 1 else ""
        if self.already:
            return f"{self.host} already runs {self.release} ({', '.join(p.file for p in self.packages)})"
        if self.replaced is None:
            did = f"first install of {first.name} {first.version}{also} on {self.host}"
            if self.kernel:
                did += f" over the factory kernel {self.replaced_release}"
        else:
            order = vercmp(first.version, self.replaced)
            verb = "upgraded" if order > 0 else "downgraded" if order < 0 else "reinstalled"
            did = f"{verb} {first.name} {self.replaced} → {first.version}{also} on {self.host}"
        if not self.kernel:
            return f"{did}; backup in {self.backup}"
        was = f" (was {self.replaced_release})" if self.replaced is not None else ""
        return f"{did}: it runs {self.release}{was}; backup in {self.backup}"


def crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- the install


def install(root: Path, manifest: Manifest, p: Plan, progress: Progress) -> Outcome:
    d = install_dir(root, manifest)
    d.mkdir(parents=True, exist_ok=True)
    with _local_lock(d / ".lock", p.host):
        board = Board(p.host, p.settings)
        try:
            journal = read_journal(p.journal_path, display_path(root, p.journal_path))
            if journal is not None:
                progress(f"an earlier install ({journal.id}) stopped at step {journal.step}: recovering it first")
                done = _recover(root, manifest, board, p, journal, progress)
                if done is not None:
                    return done
            return _fresh(root, manifest, board, p, progress)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM where nothing could be undone at once
            raise _left_for_the_next_run(root, p) from None


def _left_for_the_next_run(root: Path, p: Plan) -> Interrupted:
    """What an interrupt left: the journal says, and the next run finishes it."""
    shown = display_path(root, p.journal_path)
    try:
        journal = read_journal(p.journal_path, shown)
    except KabuildError:
        journal = None
    if journal is None:
        return Interrupted(f"{p.host}: interrupted before anything was changed on the board")
    again = f"run `kabuild install {p.host}` again"
    if journal.step is Step.ROLLING_BACK:
        then = f"{again} to finish the rollback"
    elif journal.step.order >= Step.REBOOTING.order:
        then = f"the new kernel is on trial: {again}; it waits for the board, then confirms the kernel or rolls it back"
    else:
        then = f"the board is locked with the install unfinished: {again}; it puts the board back as it was first"
    return Interrupted(f"{p.host}: interrupted at step {journal.step}; {then} (journal {shown})")


@contextlib.contextmanager
def _local_lock(path: Path, host: str) -> Iterator[None]:
    """One install per host from this checkout (the board's own lock covers other machines)."""
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise RefusalError(f"{host}: another `kabuild install {host}` from this checkout is running "
                                   f"(lock {path})") from None
            raise
        yield


def _fresh(root: Path, manifest: Manifest, board: Board, p: Plan, progress: Progress) -> Outcome:
    seen = probe(board, p, progress)
    release = p.kernel.release if p.kernel else seen.release
    if all(seen.installed.get(v.name) == v.version for v in p.packages) and seen.release == release:
        progress(f"{p.host} already runs {release} from {p.version}: nothing to do")
        return _record(root, manifest, p, Journal("none", utc_now(), Step.LOCKING, _pkgs(p), release, (),
                                                    seen.release, ""), seen.release, already=True)
    if seen.available < seen.need:
        raise RefusalError(f"{p.host}: not enough free space in /boot: {seen.need // 1024} KiB needed, "
                           f"{seen.available // 1024} KiB free; nothing was changed on the board")
    previous = _previous_packages(root, manifest, board, p, seen, progress)
    made = tuple(board.out("for d in " + " ".join(shlex.quote(d) for d in KABUILD_DIRS)
                           + "; do [ -d \"$d\" ] || echo \"$d\"; done").split())
    journal = write_journal(p.journal_path, Journal(
        id=f"{utc_stamp()}-{secrets.token_hex(4)}", started=utc_now(), step=Step.LOCKING, packages=_pkgs(p),
        release=release, replaced=tuple(previous), replaced_release=seen.release, backup="", made=made))
    try:
        board.lock(journal.id, journal.started)
    except RefusalError:
        p.journal_path.unlink(missing_ok=True)  # nothing of this install reached the board
        raise
    progress(f"locked the board ({journal.id})")
    crash_point("after-lock")
    try:
        journal = _to(p, journal, Step.BACKING_UP)
        backup = make_backup(board, p.backup_root, p.host, journal, install_dir(root, manifest) / "previous",
                             progress)
        if p.backup_remote:
            copy_remote(board, p.backup_remote, backup, p.host, journal.id, progress)
        journal = _to(p, journal, Step.BACKED_UP, backup=str(backup.directory))
        crash_point("after-backup")
        for v in p.packages:
            progress(f"uploading {v.file.name}")
            board.upload(v.file.read_bytes(), f"{CACHE_DIR}/{v.file.name}")
            if board.sha256(f"{CACHE_DIR}/{v.file.name}") != v.sha256:
                raise RefusalError(f"{v.file.name}: the uploaded copy on the board differs from the verified one")
        journal = _to(p, journal, Step.UPLOADED)
        crash_point("after-upload")
        if p.kernel is not None:
            _stage_fallback(board, seen.fallback_files, progress)
        journal = _to(p, journal, Step.FALLBACK_STAGED)
        crash_point("after-fallback")
        journal = _to(p, journal, Step.INSTALLING)
        files = " ".join(shlex.quote(f"{CACHE_DIR}/{v.file.name}") for v in p.packages)
        progress(f"pacman -U {', '.join(v.file.name for v in p.packages)}")
        pacman = board.pacman(f"-U --noconfirm --noprogressbar {files}")
        said = hook_lines(pacman.stdout + pacman.stderr)
        for line in said:
            progress(f"pacman: {line}")
        journal = _to(p, journal, Step.INSTALLED)
        crash_point("after-pacman")
        if p.kernel is not None:
            check_boot_paths(board, p, seen.new_conf, said)
            conf_path = bootloader.config_path(p.settings.boot)
            progress(f"boot entry: {bootloader.NEW_LABEL} ({p.kernel.release}) is the default, the previous kernel "
                     f"is {bootloader.FALLBACK_LABEL}")
            board.upload(bootloader.trial_marker().encode(), bootloader.TRIAL_PATH)
            board.upload(seen.new_conf.encode(), conf_path)
            journal = _to(p, journal, Step.BOOT_UPDATED)
        crash_point("after-boot-entry")
        if p.kernel is None:
            _check_versions(board, p)
    except BaseException as exc:
        current = read_journal(p.journal_path, str(p.journal_path)) or journal
        if not isinstance(exc, KeyboardInterrupt):
            progress(f"install failed before the reboot ({_short(exc)}): putting the board back as it was")
            _undo(board, p, current, progress)
            raise
        progress(f"interrupted during {_doing(current.step, p)}: putting the board back as it was "
                 "(interrupt again to stop; the next run then finishes it)")
        try:
            _undo(board, p, current, progress)  # a second interrupt: install() says what is left
        except KabuildError as undo_failed:
            raise Interrupted(f"{p.host}: interrupted during {_doing(current.step, p)}; putting the board back did not "
                              f"finish ({undo_failed}): run `kabuild install {p.host}` again to finish it (journal "
                              f"{display_path(root, p.journal_path)})") from None
        raise Interrupted(f"{p.host}: interrupted during {_doing(current.step, p)}; the board was put back as it was "
                          f"({_as_before(current)}); nothing is left to recover") from None
    if p.kernel is None:
        return _confirm(root, manifest, board, p, journal, seen.release, progress)
    board.sh(f"echo {shlex.quote(journal.id)} > {TOKEN}")
    journal = _to(p, journal, Step.REBOOTING)
    _reboot(board, p, progress)
    crash_point("after-reboot")
    return _after_reboot(root, manifest, board, p, journal, progress)


def _doing(step: Step, p: Plan) -> str:
    """What was going on after the journal reached ``step`` (before the next one was written)."""
    return {
        Step.LOCKING: "the board lock", Step.BACKING_UP: "the backup", Step.BACKED_UP: "the upload",
        Step.UPLOADED: "the copy of the running kernel" if p.kernel is not None else "the start of pacman -U",
        Step.FALLBACK_STAGED: "the start of pacman -U", Step.INSTALLING: "pacman -U",
        Step.INSTALLED: "the boot entry" if p.kernel is not None else "the version check",
        Step.BOOT_UPDATED: "the reboot",
    }.get(step, f"step {step}")


def _as_before(journal: Journal) -> str:
    old = {r.name: r.version for r in journal.replaced}
    return ", ".join(f"{pkg.name} {old[pkg.name]} is installed again" if pkg.name in old else
                     f"{pkg.name} is not installed, as before" for pkg in journal.packages)


def _to(p: Plan, journal: Journal, step: Step, **changes) -> Journal:
    return write_journal(p.journal_path, journal.at(step, **changes))


def _pkgs(p: Plan) -> tuple[InstalledPackage, ...]:
    return tuple(InstalledPackage(v.name, v.version, v.file.name, v.sha256) for v in p.packages)


def _previous_packages(root: Path, manifest: Manifest, board: Board, p: Plan, seen: Probe,
                       progress: Progress) -> list[InstalledPackage]:
    """The packages installed now, found (and verified) in the repository, for the rollback."""
    out = []
    repo = installpkg.repository_dir(root, manifest)
    staging = install_dir(root, manifest) / "previous"
    for v in p.packages:
        old = seen.installed.get(v.name)
        if old is None:
            continue
        try:
            chosen = installpkg.choose(repo, v.name, old)
        except RefusalError:
            raise RefusalError(f"{p.host}: the installed {v.name} {old} is no longer in the published repository, "
                               "so a rollback could not reinstall it; refusing to install (nothing was changed on "
                               "the board)", hint="raise publish.keep or reinstall a published version first") from None
        got = installpkg.verify(root, manifest, chosen, staging)
        out.append(InstalledPackage(got.name, got.version, got.file.name, got.sha256))
        progress(f"previous package {got.file.name} verified, kept for a rollback")
    return out


def _stage_fallback(board: Board, files: tuple[str, ...], progress: Progress) -> None:
    progress(f"keeping the running kernel's files ({', '.join(files)}) in /boot{bootloader.FALLBACK_DIR}")
    fb = "/boot" + bootloader.FALLBACK_DIR
    script = [f"rm -rf {fb}", f"mkdir -p {fb}"]
    for f in files:
        dst = shlex.quote(fb + f)
        script.append(f"mkdir -p \"$(dirname {dst})\" && cp -a {shlex.quote('/boot' + f)} {dst}")
    board.sh(" && ".join(script) + " && sync")


def _reboot(board: Board, p: Plan, progress: Progress) -> None:
    progress(f"rebooting {p.host} ({p.settings.reboot})")
    try:
        board.sh(f"nohup sh -c 'sleep 1; {p.settings.reboot}' >/dev/null 2>&1 </dev/null &", check=False)
    except BoardUnreachable:
        pass  # the connection may drop as the board goes down


def _heartbeat(board: Board, p: Plan, progress: Progress, *, timeout: int) -> str | None:
    """The release the board runs once it answers after a reboot, or None when it did not in time."""
    deadline = time.monotonic() + timeout
    progress(f"waiting up to {timeout}s for {p.host} to come back")
    while time.monotonic() < deadline:
        left = max(1, int(deadline - time.monotonic()))
        try:
            out = board.out(f"if [ -e {TOKEN} ]; then echo NOT-REBOOTED; else uname -r; fi",
                            timeout=min(30, left + 5)).strip()
            if out and out != "NOT-REBOOTED":
                progress(f"{p.host} is back and runs {out}")
                return out
        except (BoardUnreachable, KabuildError):
            pass
        time.sleep(1)
    return None


def _check_versions(board: Board, p: Plan) -> None:
    for v in p.packages:
        got = board.out(f"pacman -Q {shlex.quote(v.name)} 2>/dev/null || true").split()
        if got[1:] != [v.version]:
            raise RefusalError(f"{p.host}: after pacman -U the board has {' '.join(got) or 'no ' + v.name}, "
                               f"expected {v.name} {v.version}")


def _after_reboot(root: Path, manifest: Manifest, board: Board, p: Plan, journal: Journal,
                  progress: Progress) -> Outcome:
    assert p.kernel is not None
    release = _heartbeat(board, p, progress, timeout=p.settings.heartbeat_timeout)
    if release is None:
        if not p.settings.power_cycle:
            raise BoardLost(
                f"{p.host} did not come back within {p.settings.heartbeat_timeout}s and install.power_cycle is not "
                f"set: power-cycle the board (its bootloader then boots {bootloader.FALLBACK_LABEL}, the previous "
                f"kernel) and run `kabuild install {p.host}` again to finish the rollback; backup in {journal.backup}")
        journal = _to(p, journal, Step.POWER_CYCLED)
        progress(f"{p.host} did not come back within {p.settings.heartbeat_timeout}s: power-cycling it "
                 f"({shlex.join(p.settings.power_cycle)}); its bootloader falls back to {bootloader.FALLBACK_LABEL}")
        run(list(p.settings.power_cycle), timeout=120, check=False)
        release = _heartbeat(board, p, progress, timeout=p.settings.heartbeat_timeout)
        if release is None:
            raise BoardLost(f"{p.host} did not come back after the power cycle either; check the board by hand "
                            f"and run `kabuild install {p.host}` again to finish the rollback; backup in "
                            f"{journal.backup}")
        return _rollback(board, p, journal, f"the new kernel {p.kernel.release} never answered; the board came back "
                                            f"on {release} after a power cycle", progress)
    if release != p.kernel.release:
        return _rollback(board, p, journal, f"{p.host} came back running {release}, not the new kernel "
                                            f"{p.kernel.release}", progress)
    board.sh(f"rm -f {bootloader.TRIAL_PATH} && sync")
    progress(f"{p.kernel.release} confirmed (trial marker removed)")
    return _confirm(root, manifest, board, p, journal, release, progress)


def _confirm(root: Path, manifest: Manifest, board: Board, p: Plan, journal: Journal, release: str,
             progress: Progress) -> Outcome:
    keep = {v.file.name for v in p.packages} | {r.file for r in journal.replaced}
    board.sh(f"cd {CACHE_DIR} 2>/dev/null && for f in *; do case \" {' '.join(sorted(keep))} \" in "
             f"*\" $f \"*) ;; *) rm -f -- \"$f\";; esac; done; true")
    crash_point("after-heartbeat")
    return _record(root, manifest, p, journal, release, board=board)


def _record(root: Path, manifest: Manifest, p: Plan, journal: Journal, release: str, *,
            board: Board | None = None, already: bool = False) -> Outcome:
    replaced = journal.replaced[0].version if journal.replaced else None
    where = journal.backup
    if p.backup_remote and journal.backup:
        where = f"{p.backup_remote.rstrip('/')}/{p.host}/{Path(journal.backup).name}"
    record = InstallRecord(installed_at=utc_now(), board=p.settings.ssh, release=release, packages=journal.packages,
                           key=p.packages[0].fingerprint, replaced=replaced, replaced_release=journal.replaced_release,
                           backup=where)
    lock = read_for(root, manifest)
    if lock is not None and not already:
        with_install(lock, record)
    elif lock is not None and already and lock.install is None:
        with_install(lock, record)
    if board is not None:
        board.unlock(journal.id)
    p.journal_path.unlink(missing_ok=True)
    return Outcome(p.host, release, journal.packages, replaced, journal.replaced_release, where, already,
                   kernel=p.kernel is not None)


# --------------------------------------------------------------------------- undo, rollback, recovery


def _undo(board: Board, p: Plan, journal: Journal, progress: Progress) -> None:
    """Put the board back as it was before an install that stopped before its reboot."""
    if journal.step.order >= Step.BACKED_UP.order and journal.backup:
        backup = backup_for(journal, p.host, str(p.journal_path))
        if journal.step.order >= Step.INSTALLING.order:
            restore_packages(board, backup, journal, progress)
        restore_boot(board, backup, progress)
    _remove_uploads(board, journal)
    board.sh(f"rm -f {TOKEN}")
    board.unlock(journal.id)
    # the directories this install made for its lock and uploads (not those an earlier install left), when
    # nothing else is in them; innermost first
    if journal.made:
        board.sh("rmdir " + " ".join(shlex.quote(d) for d in sorted(journal.made, key=len, reverse=True))
                 + " 2>/dev/null; true")
    p.journal_path.unlink(missing_ok=True)
    progress("the board is as it was before the install")


def _remove_uploads(board: Board, journal: Journal) -> None:
    keep = {r.file for r in journal.replaced}
    gone = [f"{CACHE_DIR}/{pkg.file}" for pkg in journal.packages if pkg.file not in keep]
    if gone:
        board.sh("rm -f " + " ".join(shlex.quote(g) for g in gone))


def _rollback(board: Board, p: Plan, journal: Journal, why: str, progress: Progress) -> Outcome:
    assert p.kernel is not None
    backup = backup_for(journal, p.host, str(p.journal_path))  # before the journal says "rolling back"
    journal = _to(p, journal, Step.ROLLING_BACK, why=why)
    progress(f"rolling back: {why}")
    restore_packages(board, backup, journal, progress)
    crash_point("rollback-after-packages")
    restore_boot(board, backup, progress)
    _remove_uploads(board, journal)
    running = board.out("uname -r").strip()
    if running != journal.replaced_release:
        board.sh(f"echo {shlex.quote(journal.id)} > {TOKEN}")
        _reboot(board, p, progress)
        release = _heartbeat(board, p, progress, timeout=p.settings.heartbeat_timeout)
        if release != journal.replaced_release:
            raise BoardLost(f"{p.host}: the rollback restored {journal.replaced_release} but the board "
                            f"{'runs ' + release if release else 'did not come back'}; backup in {journal.backup}")
    board.unlock(journal.id)
    p.journal_path.unlink(missing_ok=True)
    raise InstallFailed(f"{p.host}: {why}; rolled back: the board runs {journal.replaced_release} again "
                        f"(backup kept in {journal.backup})")


def _recover(root: Path, manifest: Manifest, board: Board, p: Plan, journal: Journal,
             progress: Progress) -> Outcome | None:
    if journal.step.order >= Step.REBOOTING.order:
        _journal_plan(p, journal)
    if journal.step.order >= Step.REBOOTING.order and p.kernel is None:
        progress(f"the journal says step {journal.step}, but {', '.join(x.name for x in journal.packages)} carries "
                 "no kernel and is never rebooted: undoing it as an install that stopped before a reboot")
    elif journal.step.order >= Step.REBOOTING.order:
        if journal.step is Step.ROLLING_BACK:
            _rollback(board, p, journal, journal.why, progress)
        try:  # the board may be rebooting right now: the heartbeat waits for it
            if board.out(f"cat {TOKEN} 2>/dev/null || true").strip() == journal.id:
                _reboot(board, p, progress)  # killed before the reboot was sent
        except BoardUnreachable:
            pass
        return _after_reboot(root, manifest, board, p, journal, progress)
    owner = board.lock_owner()
    if owner not in (None, journal.id):
        raise RefusalError(f"{p.host}: the journal {p.journal_path} is from install {journal.id}, but the board is "
                           f"locked by install {owner}; refusing to touch it")
    _undo(board, p, journal, progress)
    return None


def _journal_plan(p: Plan, journal: Journal) -> None:
    if [v.file.name for v in p.packages] != [pkg.file for pkg in journal.packages]:
        raise RefusalError(f"{p.host}: an interrupted install of {', '.join(x.file for x in journal.packages)} "
                           f"must finish first; run `kabuild install {p.host} --version "
                           f"{journal.packages[0].version}`")


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def display_path(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
