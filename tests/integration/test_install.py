"""`kabuild install` against a real board stand-in (tests/integration/boardsim.py): real sshd, real
pacman running the packages' hooks (with the board's mkinitcpio stand-in), /boot with extlinux.conf,
a firmware that boots the default entry (or the fallback after a failed trial boot), reboot =
container restart.  The packages are real pacman packages built with makepkg, published once per
module with kabuild's own publish (signed), and installed by a real kabuild process.

One board and one signed repository serve the whole module: the ``board`` fixture resets the board
to its factory state (a new container, /boot as the vendor wrote it) and the repository's install
state (journal, backups, the lock's install: block) before each test.
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
from kabuild.install.bootloader import parse
from kabuild.install.plan import CRASH_STEPS

pytestmark = [pytest.mark.docker, pytest.mark.install]

HOST = "kb"
NAME = "linux-kbboard"
INITRD = f"/initramfs-{NAME}.img"  # what the fixture's preset names and its hook makes
# what an install may change on the board, compared around rollbacks
CHANGED = ("/boot", "/var/lib/pacman/local", "/usr/lib/modules", "/etc/mkinitcpio.d", "/usr/share/libalpm/hooks")


def build_kernel(out: Path, pkgver: str, release: str, *, boots_as: str | None = None, panic: str = "",
                 hook_preset: str | None = None) -> Path:
    """A kernel-shaped package from the fixture PKGBUILD, built by real makepkg as 'nobody'."""
    scratch = Path(tempfile.mkdtemp(prefix="kabuild-kernel-"))
    try:
        os.chmod(scratch, 0o777)
        text = (FIXTURES / NAME / "PKGBUILD").read_text()
        text = (text.replace("pkgver=6.1.1", f"pkgver={pkgver}").replace("_release=6.1.1-kb1", f"_release={release}")
                .replace("_boots_as=$_release", f"_boots_as={boots_as or release}")
                .replace("_panic=\n", f"_panic={shlex.quote(panic)}\n"))
        if hook_preset:
            text = text.replace("_hook_preset=$pkgname", f"_hook_preset={hook_preset}")
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


def publish(root: Path, host: str, repository: str, name: str, *packages: Path) -> None:
    """Publish with kabuild's own publish (throwaway key), and export the key as `kabuild publish` does."""
    from kabuild.files import atomic_write, digest_file
    from kabuild.publish import publish as do_publish
    from kabuild.publish import signing
    from kabuild.publish.gate import Candidate

    host_dir = root / "build" / host
    signer, home = signing.for_repository("throwaway", host_dir, host, None, None)
    try:
        for p in packages:  # one at a time: the gate hands publish one file per package name
            d = digest_file(p)
            do_publish([Candidate(name, p, d.sha256, d.b2sum)], repository=repository,
                       destination=f"build/{host}/repo", signer=signer, keep=10, root=root)
        atomic_write(host_dir / f"{repository}.asc", signing.export_public(home, signer.fingerprint))
    finally:  # the throwaway key's home is ours: no agent outlives the publish
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)


PUBLISH_SECTION = f"publish:\n  repository: kbboard\n  key: throwaway\n  destination: build/{HOST}/repo\n  keep: 10\n"


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """One repository for the module: the host promoted, every fixture kernel published and signed once.
    Versions: 6.1.1 and 6.1.2 good, 6.1.3 panics, 6.1.4 boots as another release, 6.1.5's hook builds
    another preset than the one whose image it names."""
    base = tmp_path_factory.mktemp("signed")
    root = make_repo(base, HOST, [NAME])
    manifest = root / "fleet" / f"{HOST}.yaml"
    manifest.write_text(manifest.read_text() + PUBLISH_SECTION)
    out = base / "kernels"
    kernels = {
        "v1": build_kernel(out, "6.1.1", "6.1.1-kb1"),
        "v2": build_kernel(out, "6.1.2", "6.1.2-kb2"),
        "panic": build_kernel(out, "6.1.3", "6.1.3-kb3", panic="VFS: unable to mount root fs"),
        "wrong": build_kernel(out, "6.1.4", "6.1.4-kb4", boots_as="9.9.9-wrong"),
        "nohook": build_kernel(out, "6.1.5", "6.1.5-kb5", hook_preset=f"{NAME}-typo"),
    }
    publish(root, HOST, "kbboard", NAME, *kernels.values())
    lock = root / "build" / HOST / "v1.0" / "manifest.lock"
    return root, manifest.read_text(), lock.read_bytes(), kernels


@pytest.fixture(scope="module")
def shared_board(engine, tmp_path_factory):
    b = BoardSim(engine.client, f"kbboard-{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("board"), free_port())
    yield b
    b.close()


@pytest.fixture
def board(shared_board, signed):
    """The module's board, reset to the factory state, and the repository's install state cleared."""
    root, manifest, lock, _ = signed
    for d in (root / "build" / HOST / "install", root / "build" / "backups"):
        shutil.rmtree(d, ignore_errors=True)
    (root / "build" / HOST / "v1.0" / "manifest.lock").write_bytes(lock)
    (root / "fleet" / f"{HOST}.yaml").write_text(manifest)
    yield shared_board
    if os.path.ismount(shared_board.boot):  # the full-/boot test's tmpfs: the next reset starts clean
        shared_board.remove()
        subprocess.run(["umount", str(shared_board.boot)], check=False)


@pytest.fixture
def kernels(signed):
    return signed[3]


def setup_host(board: BoardSim, signed, *, boot_size: str | None = None, **install) -> Path:
    """Factory-reset the board and point the host's install: section at it."""
    root, manifest, _, _ = signed
    board.factory_reset(boot_size=boot_size)
    (root / "fleet" / f"{HOST}.yaml").write_text(manifest + board.install_block(**install))
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
    # the initramfs the package's hook made for this release, which the boot entry names
    made = (board.boot / INITRD.lstrip("/")).read_text()
    assert "kabuild board stand-in initramfs" in made and f"kver={release}\n" in made, made


def entry(board: BoardSim, label: str):
    found = parse((board.boot / "extlinux" / "extlinux.conf").read_text()).entry(label)
    assert found is not None, label
    return found


# --------------------------------------------------------------------------- success


def test_install_then_upgrade_with_backup_and_fallback_entry(board, signed, kernels):
    root = setup_host(board, signed)
    assert board.release() == FACTORY_RELEASE

    r = install(root, "--dry-run", "--version", "6.1.1")
    assert r.code == 0, str(r)
    assert "dry run: nothing was changed" in r.out
    assert f"its hooks make the initramfs {INITRD} from /etc/mkinitcpio.d/{NAME}.preset" in r.out, r.out
    assert board.installed(NAME) is None

    r = install(root, "--version", "6.1.1")
    assert r.code == 0, str(r)
    assert_installed(root, board, "6.1.1-1", "6.1.1-kb1")
    conf = (board.boot / "extlinux" / "extlinux.conf").read_text()
    assert "DEFAULT kabuild\n" in conf
    new = entry(board, "kabuild")
    # the entry names what the package shipped and what its hook made, not the factory's files
    assert (new.get("KERNEL"), new.get("INITRD"), new.get("FDTDIR")) == ("/Image", INITRD, "/dtbs"), conf
    assert "LABEL kabuild-fallback" in conf and "KERNEL /kabuild-fallback/vmlinuz-factory" in conf
    assert (board.boot / "kabuild-fallback" / "vmlinuz-factory").read_text() == f"release={FACTORY_RELEASE}\n"
    backup = root / "build" / "backups" / HOST / "none"
    assert (backup / "boot.tar").is_file() and "./vmlinuz-factory" in (backup / "boot.sha256").read_text()
    for step in ("connecting", "/boot:", "backing up", "pacman -U", f"pacman: (1/1) Updating {NAME} initcpios",
                 "boot entry", "rebooting", "is back and runs"):
        assert step in r.err, (step, r.err)

    # the same again: nothing to do
    r = install(root, "--version", "6.1.1")
    assert r.code == 0 and "already runs 6.1.1-kb1" in r.out, str(r)

    # the upgrade boots the device tree the manifest names (install.fdt) instead of the directory
    manifest = root / "fleet" / f"{HOST}.yaml"
    manifest.write_text(manifest.read_text() + "  fdt: board.dtb\n")
    r = install(root, "--version", "6.1.2")
    assert r.code == 0, str(r)
    assert_installed(root, board, "6.1.2-1", "6.1.2-kb2")
    new = entry(board, "kabuild")
    assert new.get("FDT") == "/dtbs/board.dtb" and new.get("FDTDIR") is None, new
    lock = read_lock(root / "build" / HOST / "v1.0" / "manifest.lock")
    assert lock is not None and lock.install is not None
    assert lock.install.replaced == "6.1.1-1" and lock.install.replaced_release == "6.1.1-kb1"
    backup = root / "build" / "backups" / HOST / "6.1.1-1"
    assert (backup / "packages" / kernels["v1"].name).is_file()
    fallback = (board.boot / "kabuild-fallback" / "Image").read_text()
    assert fallback.startswith("release=6.1.1-kb1\n")
    assert "kver=6.1.1-kb1" in (board.boot / "kabuild-fallback" / INITRD.lstrip("/")).read_text()


# --------------------------------------------------------------------------- refusals, board untouched


@pytest.mark.parametrize("how", ["unsigned", "tampered"])
def test_unsigned_or_tampered_package_is_refused_and_the_board_untouched(board, signed, kernels, how, tmp_path):
    root = setup_host(board, signed)
    repo = (root / "build" / HOST / "repo").resolve()
    saved = tmp_path / "saved"
    shutil.copytree(repo, saved, symlinks=True)  # the module's repository, put back afterwards
    try:
        pkg = repo / kernels["v1"].name
        if how == "unsigned":
            Path(str(pkg) + ".sig").unlink()
        else:
            data = bytearray(pkg.read_bytes())
            data[-10] ^= 0xFF
            pkg.unlink()
            pkg.write_bytes(bytes(data))
        before = board.snapshot()
        r = install(root, "--version", "6.1.1")
        assert r.code == 3, str(r)
        assert "Traceback" not in r.err and len(r.err.strip().splitlines()) <= 3
        assert ("unsigned" in r.err) if how == "unsigned" else ("does not verify" in r.err)
        assert board.snapshot() == before
        assert board.release() == FACTORY_RELEASE
    finally:
        shutil.rmtree(repo)
        shutil.copytree(saved, repo, symlinks=True)


def test_a_boot_entry_naming_an_image_the_hook_did_not_make_is_refused_before_the_reboot(board, signed):
    """6.1.5's preset names /initramfs-linux-kbboard.img, but its hook builds another preset."""
    root = setup_host(board, signed)
    before = board.snapshot()
    r = install(root, "--version", "6.1.5")
    assert r.code == 3, str(r)
    assert f"the new boot entry names {INITRD}, not on the board after pacman -U" in r.err, r.err
    assert f"the image /etc/mkinitcpio.d/{NAME}.preset names" in r.err and "refusing to reboot" in r.err, r.err
    assert "pacman said: error:" in r.err, r.err  # the hook's failure, as pacman reported it
    assert "putting the board back as it was" in r.err and "rebooting" not in r.err, r.err
    assert board.snapshot() == before
    assert board.release() == FACTORY_RELEASE and board.installed(NAME) is None
    assert not (root / "build" / HOST / "install" / "journal.yaml").exists()


@pytest.mark.root
def test_full_boot_is_refused_and_the_board_untouched(board, signed):
    root = setup_host(board, signed, boot_size="1m")
    # leave about 200 KiB: less than the kernel image (256 KiB) needs
    free = os.statvfs(board.boot).f_bavail * os.statvfs(board.boot).f_frsize
    (board.boot / "filler").write_bytes(b"\0" * (free - 200 * 1024))
    before = board.snapshot()
    r = install(root, "--version", "6.1.1")
    assert r.code == 3, str(r)
    assert "not enough free space in /boot" in r.err, r.err
    assert board.snapshot() == before
    assert board.release() == FACTORY_RELEASE


# --------------------------------------------------------------------------- rollback


def test_kernel_that_never_answers_is_rolled_back_after_a_power_cycle(board, signed):
    root = setup_host(board, signed, heartbeat_timeout=5)
    assert install(root, "--version", "6.1.1").code == 0
    before = board.snapshot(*CHANGED)
    r = install(root, "--version", "6.1.3")
    assert r.code == 4, str(r)
    assert "never answered" in r.err and "power-cycling" in r.err and "rolled back" in r.err, r.err
    assert board.release() == "6.1.1-kb1"
    assert board.installed(NAME) == "6.1.1-1"
    assert board.snapshot(*CHANGED) == before
    assert (root / "build" / "backups" / HOST / "6.1.1-1" / "boot.tar").is_file(), "the backup must be kept"
    lock = read_lock(root / "build" / HOST / "v1.0" / "manifest.lock")
    assert lock is not None and lock.install is not None and lock.install.release == "6.1.1-kb1"


def test_without_a_power_cycle_hook_the_operator_power_cycles_and_a_rerun_rolls_back(board, signed):
    root = setup_host(board, signed, heartbeat_timeout=5, power_cycle=False)
    assert install(root, "--version", "6.1.1").code == 0
    before = board.snapshot(*CHANGED)
    r = install(root, "--version", "6.1.3")
    assert r.code == 5, str(r)
    assert "did not come back within 5s and install.power_cycle is not set: power-cycle the board" in r.err, r.err
    assert (root / "build" / HOST / "install" / "journal.yaml").exists()
    subprocess.run(board.power_cycle, check=True, capture_output=True, timeout=120)  # the operator's hand
    r = install(root, "--version", "6.1.3")
    assert r.code == 4, str(r)
    assert "recovering" in r.err and "rolled back" in r.err, r.err
    assert board.release() == "6.1.1-kb1"
    assert board.snapshot(*CHANGED) == before
    assert not (root / "build" / HOST / "install" / "journal.yaml").exists()


def test_kernel_that_comes_back_with_the_wrong_release_is_rolled_back(board, signed):
    root = setup_host(board, signed)
    assert install(root, "--version", "6.1.1").code == 0
    before = board.snapshot(*CHANGED)
    r = install(root, "--version", "6.1.4")
    assert r.code == 4, str(r)
    assert "running 9.9.9-wrong" in r.err, r.err
    assert board.release() == "6.1.1-kb1"
    assert board.snapshot(*CHANGED) == before


def test_kill_during_a_rollback_then_a_rerun_finishes_it(board, signed):
    root = setup_host(board, signed)
    assert install(root, "--version", "6.1.1").code == 0
    before = board.snapshot(*CHANGED)
    r = install(root, "--version", "6.1.4", crash="rollback-after-packages")
    assert r.code == -9 and "rolling back" in r.err, str(r)
    r = install(root, "--version", "6.1.4")
    assert r.code == 4, str(r)
    assert "stopped at step rolling-back" in r.err and "rolled back" in r.err, r.err
    assert board.release() == "6.1.1-kb1"
    assert board.snapshot(*CHANGED) == before


# --------------------------------------------------------------------------- kill -9, concurrency


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_kill_at_each_step_then_a_rerun_recovers(board, signed, step):
    root = setup_host(board, signed)
    r = install(root, "--version", "6.1.1", crash=step)
    assert r.code == -9, str(r)
    assert (root / "build" / HOST / "install" / "journal.yaml").exists()
    r = install(root, "--version", "6.1.1")
    assert r.code == 0, str(r)
    assert "recovering" in r.err, r.err
    assert_installed(root, board, "6.1.1-1", "6.1.1-kb1")


def _second_checkout(root: Path, tmp_path: Path) -> Path:
    other = tmp_path / "other"  # a second operator's checkout, same board
    shutil.copytree(root, other, symlinks=True, ignore=shutil.ignore_patterns("S.gpg-agent*"))
    return other


def test_two_concurrent_installs_one_is_refused_by_the_board_lock(board, signed, tmp_path):
    root = setup_host(board, signed)
    other = _second_checkout(root, tmp_path)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", install(root, "--version", "6.1.1")))
    first.start()
    deadline = time.monotonic() + 120
    while board.exec("test -d /var/lib/kabuild/install.lock")[0] != 0:
        assert time.monotonic() < deadline and first.is_alive(), "the first install never locked the board"
        time.sleep(0.05)
    second = install(other, "--version", "6.1.1")
    first.join(600)
    assert second.code == 3, str(second)
    assert "another install holds the board's lock" in second.err, second.err
    assert results["first"].code == 0, str(results["first"])
    assert_installed(root, board, "6.1.1-1", "6.1.1-kb1")


def test_package_without_a_kernel_is_installed_without_a_reboot(shared_board, tmp_path):
    """The demo's case (`make demo-install`): kabuild-hello carries no kernel."""
    from publish_helpers import build_package

    board = shared_board.factory_reset()
    root = make_repo(tmp_path, HOST, ["steady"])
    manifest = root / "fleet" / f"{HOST}.yaml"
    manifest.write_text(manifest.read_text() + PUBLISH_SECTION
                        # the remote backup goes over ssh to a real sshd: the board's own, here
                        + board.install_block(backup=f"ssh://root@127.0.0.1:{board.port}/var/backups/kabuild"))
    publish(root, HOST, "kbboard", "steady", build_package(tmp_path / "pkgs", "steady", "1.0"))
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


def test_a_lock_left_by_a_killed_install_refuses_others_until_its_owner_recovers(board, signed, tmp_path):
    root = setup_host(board, signed)
    other = _second_checkout(root, tmp_path)
    assert install(root, "--version", "6.1.1", crash="after-upload").code == -9
    before = board.snapshot()
    r = install(other, "--version", "6.1.1")
    assert r.code == 3 and "another install holds the board's lock" in r.err, str(r)
    assert board.snapshot() == before, "the refused install must not touch the board"
    assert not (other / "build" / HOST / "install" / "journal.yaml").exists()
    r = install(root, "--version", "6.1.1")
    assert r.code == 0 and "recovering" in r.err, str(r)
    assert_installed(root, board, "6.1.1-1", "6.1.1-kb1")
