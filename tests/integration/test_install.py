"""`kabuild install` against a real board stand-in (tests/integration/boardsim.py): real sshd, real
pacman, /boot with extlinux.conf, a firmware that boots the default entry (or the fallback after a
failed trial boot), reboot = container restart.  The packages are real pacman packages built with
makepkg, published with kabuild's own publish (signed), and installed by a real kabuild process.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from boardsim import FACTORY_RELEASE, BoardSim, free_port
from itest import FIXTURES, kabuild, make_repo
from publish_helpers import makepkg

from kabuild.inputs.lock import read_lock
from kabuild.install.plan import CRASH_STEPS

pytestmark = [pytest.mark.docker, pytest.mark.install]

HOST = "kb"
NAME = "linux-kbboard"


def build_kernel(out: Path, pkgver: str, release: str, *, boots_as: str | None = None, panic: str = "") -> Path:
    """A kernel-shaped package from the fixture PKGBUILD, built by real makepkg as 'nobody'."""
    scratch = Path(tempfile.mkdtemp(prefix="kabuild-kernel-"))
    try:
        os.chmod(scratch, 0o777)
        text = (FIXTURES / NAME / "PKGBUILD").read_text()
        text = (text.replace("pkgver=6.1.1", f"pkgver={pkgver}").replace("_release=6.1.1-kb1", f"_release={release}")
                .replace("_boots_as=$_release", f"_boots_as={boots_as or release}")
                .replace("_panic=\n", f"_panic={shlex.quote(panic)}\n"))
        (scratch / "PKGBUILD").write_text(text)
        os.chmod(scratch / "PKGBUILD", 0o644)
        makepkg(scratch, CARCH="x86_64")
        found = list(scratch.glob(f"{NAME}-{pkgver}-1-*.pkg.tar.zst"))
        assert len(found) == 1, list(scratch.iterdir())
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], out / found[0].name)
        return out / found[0].name
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    d = tmp_path_factory.mktemp("kernels")
    return {
        "v1": build_kernel(d, "6.1.1", "6.1.1-kb1"),
        "v2": build_kernel(d, "6.1.2", "6.1.2-kb2"),
        "panic": build_kernel(d, "6.1.3", "6.1.3-kb3", panic="VFS: unable to mount root fs"),
        "wrong": build_kernel(d, "6.1.4", "6.1.4-kb4", boots_as="9.9.9-wrong"),
    }


def publish(root: Path, *packages: Path) -> None:
    """Publish with kabuild's own publish (throwaway key), and export the key as `kabuild publish` does."""
    from kabuild.files import atomic_write, digest_file
    from kabuild.publish import publish as do_publish
    from kabuild.publish import signing
    from kabuild.publish.gate import Candidate

    host_dir = root / "build" / HOST
    signer, home = signing.for_repository("throwaway", host_dir, HOST, None, None)
    cands = []
    for p in packages:
        d = digest_file(p)
        cands.append(Candidate(NAME, p, d.sha256, d.b2sum))
    for c in cands:  # one at a time: the gate hands publish one file per package name
        do_publish([c], repository="kbboard", destination=f"build/{HOST}/repo", signer=signer, keep=5, root=root)
    atomic_write(host_dir / "kbboard.asc", signing.export_public(home, signer.fingerprint))


def repo_dir(root: Path) -> Path:
    return (root / "build" / HOST / "repo").resolve()


@pytest.fixture
def board(engine, tmp_path):
    b = BoardSim(engine.client, f"kbboard-{uuid.uuid4().hex[:8]}", tmp_path / "board", free_port())
    yield b
    b.remove()
    if os.path.ismount(b.boot):
        subprocess.run(["umount", str(b.boot)], check=False)


def setup_host(tmp_path: Path, board: BoardSim, **install) -> Path:
    root = make_repo(tmp_path, HOST, [NAME])
    manifest = root / "fleet" / f"{HOST}.yaml"
    text = manifest.read_text() + (f"publish:\n  repository: kbboard\n  key: throwaway\n"
                                   f"  destination: build/{HOST}/repo\n  keep: 5\n")
    manifest.write_text(text + board.install_block(**install))
    return root


def install(root: Path, *args: str, crash: str | None = None):
    env = {"KABUILD_INSTALL_CRASH_AT": crash} if crash else None
    return kabuild(root, "install", HOST, "--yes", *args, timeout=600, env=env)


def assert_installed(root: Path, board: BoardSim, version: str, release: str) -> None:
    assert board.release() == release
    assert board.installed(NAME) == version
    lock = read_lock(root / "build" / HOST / "v1.0" / "manifest.lock")
    assert lock is not None and lock.install is not None
    assert lock.install.release == release
    assert lock.install.packages[0].version == version
    assert board.exec("test -e /var/lib/kabuild/install.lock")[0] != 0, "the board lock was not released"
    assert not (root / "build" / HOST / "install" / "journal.yaml").exists()
    assert board.exec("test -e /boot/extlinux/kabuild-trial")[0] != 0, "the new kernel was not confirmed"


# --------------------------------------------------------------------------- success


def test_install_then_upgrade_with_backup_and_fallback_entry(tmp_path, board, kernels):
    board.start()
    root = setup_host(tmp_path, board)
    publish(root, kernels["v1"])
    assert board.release() == FACTORY_RELEASE

    r = install(root, "--dry-run")
    assert r.code == 0, str(r)
    assert "dry run: nothing was changed" in r.out
    assert board.installed(NAME) is None

    r = install(root)
    assert r.code == 0, str(r)
    assert_installed(root, board, "6.1.1-1", "6.1.1-kb1")
    conf = (board.boot / "extlinux" / "extlinux.conf").read_text()
    assert "DEFAULT kabuild\n" in conf
    assert "LABEL kabuild-fallback" in conf and "KERNEL /kabuild-fallback/vmlinuz-factory" in conf
    assert (board.boot / "kabuild-fallback" / "vmlinuz-factory").read_text() == f"release={FACTORY_RELEASE}\n"
    backup = root / "build" / "backups" / HOST / "none"
    assert (backup / "boot.tar").is_file() and "./vmlinuz-factory" in (backup / "boot.sha256").read_text()
    for step in ("connecting", "/boot:", "backing up", "pacman -U", "boot entry", "rebooting", "is back and runs"):
        assert step in r.err, (step, r.err)

    # the same again: nothing to do
    r = install(root)
    assert r.code == 0 and "already runs 6.1.1-kb1" in r.out, str(r)

    publish(root, kernels["v2"])
    r = install(root, "--version", "6.1.2")
    assert r.code == 0, str(r)
    assert_installed(root, board, "6.1.2-1", "6.1.2-kb2")
    lock = read_lock(root / "build" / HOST / "v1.0" / "manifest.lock")
    assert lock is not None and lock.install is not None
    assert lock.install.replaced == "6.1.1-1" and lock.install.replaced_release == "6.1.1-kb1"
    backup = root / "build" / "backups" / HOST / "6.1.1-1"
    assert (backup / "packages" / kernels["v1"].name).is_file()
    fallback = (board.boot / "kabuild-fallback" / "Image").read_text()
    assert fallback.startswith("release=6.1.1-kb1\n")


# --------------------------------------------------------------------------- refusals, board untouched


@pytest.mark.parametrize("how", ["unsigned", "tampered"])
def test_unsigned_or_tampered_package_is_refused_and_the_board_untouched(tmp_path, board, kernels, how):
    board.start()
    root = setup_host(tmp_path, board)
    publish(root, kernels["v1"])
    pkg = repo_dir(root) / kernels["v1"].name
    if how == "unsigned":
        Path(str(pkg) + ".sig").unlink()
    else:
        data = bytearray(pkg.read_bytes())
        data[-10] ^= 0xFF
        pkg.unlink()
        pkg.write_bytes(bytes(data))
    before = board.snapshot()
    r = install(root)
    assert r.code == 3, str(r)
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) <= 3
    assert ("unsigned" in r.err) if how == "unsigned" else ("does not verify" in r.err)
    assert board.snapshot() == before
    assert board.release() == FACTORY_RELEASE


@pytest.mark.root
def test_full_boot_is_refused_and_the_board_untouched(tmp_path, board, kernels):
    board.boot.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(board.boot)], check=True)
    board.start()
    # leave about 200 KiB: less than the kernel image (256 KiB) needs
    free = os.statvfs(board.boot).f_bavail * os.statvfs(board.boot).f_frsize
    (board.boot / "filler").write_bytes(b"\0" * (free - 200 * 1024))
    root = setup_host(tmp_path, board)
    publish(root, kernels["v1"])
    before = board.snapshot()
    r = install(root)
    assert r.code == 3, str(r)
    assert "not enough free space in /boot" in r.err, r.err
    assert board.snapshot() == before
    assert board.release() == FACTORY_RELEASE


# --------------------------------------------------------------------------- rollback


def test_kernel_that_never_answers_is_rolled_back_after_a_power_cycle(tmp_path, board, kernels):
    board.start()
    root = setup_host(tmp_path, board, heartbeat_timeout=15)
    publish(root, kernels["v1"], kernels["panic"])
    assert install(root, "--version", "6.1.1").code == 0
    before = board.snapshot("/boot", "/var/lib/pacman/local", "/usr/lib/modules")
    r = install(root, "--version", "6.1.3")
    assert r.code == 4, str(r)
    assert "never answered" in r.err and "power-cycling" in r.err and "rolled back" in r.err, r.err
    assert board.release() == "6.1.1-kb1"
    assert board.installed(NAME) == "6.1.1-1"
    assert board.snapshot("/boot", "/var/lib/pacman/local", "/usr/lib/modules") == before
    assert (root / "build" / "backups" / HOST / "6.1.1-1" / "boot.tar").is_file(), "the backup must be kept"
    lock = read_lock(root / "build" / HOST / "v1.0" / "manifest.lock")
    assert lock is not None and lock.install is not None and lock.install.release == "6.1.1-kb1"


def test_without_a_power_cycle_hook_the_operator_power_cycles_and_a_rerun_rolls_back(tmp_path, board, kernels):
    board.start()
    root = setup_host(tmp_path, board, heartbeat_timeout=8, power_cycle=False)
    publish(root, kernels["v1"], kernels["panic"])
    assert install(root, "--version", "6.1.1").code == 0
    before = board.snapshot("/boot", "/var/lib/pacman/local", "/usr/lib/modules")
    r = install(root, "--version", "6.1.3")
    assert r.code == 5, str(r)
    assert "did not come back within 8s and install.power_cycle is not set: power-cycle the board" in r.err, r.err
    assert (root / "build" / HOST / "install" / "journal.yaml").exists()
    subprocess.run(board.power_cycle, check=True, capture_output=True, timeout=120)  # the operator's hand
    r = install(root, "--version", "6.1.3")
    assert r.code == 4, str(r)
    assert "recovering" in r.err and "rolled back" in r.err, r.err
    assert board.release() == "6.1.1-kb1"
    assert board.snapshot("/boot", "/var/lib/pacman/local", "/usr/lib/modules") == before
    assert not (root / "build" / HOST / "install" / "journal.yaml").exists()


def test_kernel_that_comes_back_with_the_wrong_release_is_rolled_back(tmp_path, board, kernels):
    board.start()
    root = setup_host(tmp_path, board)
    publish(root, kernels["v1"], kernels["wrong"])
    assert install(root, "--version", "6.1.1").code == 0
    before = board.snapshot("/boot", "/var/lib/pacman/local", "/usr/lib/modules")
    r = install(root, "--version", "6.1.4")
    assert r.code == 4, str(r)
    assert "running 9.9.9-wrong" in r.err, r.err
    assert board.release() == "6.1.1-kb1"
    assert board.snapshot("/boot", "/var/lib/pacman/local", "/usr/lib/modules") == before


def test_kill_during_a_rollback_then_a_rerun_finishes_it(tmp_path, board, kernels):
    board.start()
    root = setup_host(tmp_path, board)
    publish(root, kernels["v1"], kernels["wrong"])
    assert install(root, "--version", "6.1.1").code == 0
    before = board.snapshot("/boot", "/var/lib/pacman/local", "/usr/lib/modules")
    r = install(root, "--version", "6.1.4", crash="rollback-after-packages")
    assert r.code == -9 and "rolling back" in r.err, str(r)
    r = install(root, "--version", "6.1.4")
    assert r.code == 4, str(r)
    assert "stopped at step rolling-back" in r.err and "rolled back" in r.err, r.err
    assert board.release() == "6.1.1-kb1"
    assert board.snapshot("/boot", "/var/lib/pacman/local", "/usr/lib/modules") == before


# --------------------------------------------------------------------------- kill -9, concurrency


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_kill_at_each_step_then_a_rerun_recovers(tmp_path, board, kernels, step):
    board.start()
    root = setup_host(tmp_path, board)
    publish(root, kernels["v1"])
    r = install(root, crash=step)
    assert r.code == -9, str(r)
    assert (root / "build" / HOST / "install" / "journal.yaml").exists()
    r = install(root)
    assert r.code == 0, str(r)
    assert "recovering" in r.err, r.err
    assert_installed(root, board, "6.1.1-1", "6.1.1-kb1")


def test_two_concurrent_installs_one_is_refused_by_the_board_lock(tmp_path, board, kernels):
    board.start()
    root = setup_host(tmp_path, board)
    publish(root, kernels["v1"])
    other = tmp_path / "other"
    shutil.copytree(root, other, symlinks=True, ignore=shutil.ignore_patterns("S.gpg-agent*"))  # a second operator's checkout, same board
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", install(root)))
    first.start()
    deadline = time.monotonic() + 120
    while board.exec("test -d /var/lib/kabuild/install.lock")[0] != 0:
        assert time.monotonic() < deadline and first.is_alive(), "the first install never locked the board"
        time.sleep(0.05)
    second = install(other)
    first.join(600)
    assert second.code == 3, str(second)
    assert "another install holds the board's lock" in second.err, second.err
    assert results["first"].code == 0, str(results["first"])
    assert_installed(root, board, "6.1.1-1", "6.1.1-kb1")


def test_package_without_a_kernel_is_installed_without_a_reboot(tmp_path, board):
    """The demo's case (`make demo-install`): kabuild-hello carries no kernel."""
    from publish_helpers import build_package

    board.start()
    root = make_repo(tmp_path, HOST, ["steady"])
    manifest = root / "fleet" / f"{HOST}.yaml"
    manifest.write_text(manifest.read_text() + f"publish:\n  repository: kbboard\n  key: throwaway\n"
                        f"  destination: build/{HOST}/repo\n  keep: 5\n"
                        # the remote backup goes over ssh to a real sshd: the board's own, here
                        + board.install_block(backup=f"ssh://root@127.0.0.1:{board.port}/var/backups/kabuild"))
    pkg = build_package(tmp_path / "pkgs", "steady", "1.0")
    from kabuild.files import atomic_write, digest_file
    from kabuild.publish import publish as do_publish
    from kabuild.publish import signing
    from kabuild.publish.gate import Candidate

    signer, home = signing.for_repository("throwaway", root / "build" / HOST, HOST, None, None)
    d = digest_file(pkg)
    do_publish([Candidate("steady", pkg, d.sha256, d.b2sum)], repository="kbboard",
               destination=f"build/{HOST}/repo", signer=signer, keep=5, root=root)
    atomic_write(root / "build" / HOST / "kbboard.asc", signing.export_public(home, signer.fingerprint))
    r = install(root)
    assert r.code == 0, str(r)
    assert "rebooting" not in r.err
    assert board.installed("steady") == "1.0-1"
    assert board.release() == FACTORY_RELEASE
    assert board.exec("cat /usr/share/steady/hello.txt")[1].strip() == "hello from steady 1.0-1"
    lock = read_lock(root / "build" / HOST / "v1.0" / "manifest.lock")
    assert lock is not None and lock.install is not None and lock.install.release == FACTORY_RELEASE
    remote = f"ssh://root@127.0.0.1:{board.port}/var/backups/kabuild/{HOST}/none"
    local = root / "build" / HOST / "install" / "backups" / HOST / "none"
    files = [p for p in local.rglob("*") if p.is_file()]
    assert lock.install.backup == remote and f"remote backup verified: {len(files)} file(s) in {remote}" in r.err
    code, out = board.exec(f"cd /var/backups/kabuild/{HOST}/none && sha256sum boot.tar backup.yaml")
    assert code == 0, out
    for line in out.splitlines():
        digest, name = line.split()
        assert digest == hashlib.sha256((local / name).read_bytes()).hexdigest(), name


def test_a_lock_left_by_a_killed_install_refuses_others_until_its_owner_recovers(tmp_path, board, kernels):
    board.start()
    root = setup_host(tmp_path, board)
    publish(root, kernels["v1"])
    other = tmp_path / "other"
    shutil.copytree(root, other, symlinks=True, ignore=shutil.ignore_patterns("S.gpg-agent*"))
    assert install(root, crash="after-upload").code == -9
    before = board.snapshot()
    r = install(other)
    assert r.code == 3 and "another install holds the board's lock" in r.err, str(r)
    assert board.snapshot() == before, "the refused install must not touch the board"
    assert not (other / "build" / HOST / "install" / "journal.yaml").exists()
    r = install(root)
    assert r.code == 0 and "recovering" in r.err, str(r)
    assert_installed(root, board, "6.1.1-1", "6.1.1-kb1")
