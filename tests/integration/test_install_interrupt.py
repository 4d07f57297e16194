"""`kabuild install` interrupted (Ctrl-C, SIGTERM) on the board stand-in (tests/integration/boardsim.py):
the board is either put back as it was, or left for the next run to finish, and kabuild says which.

One board for the module, a short heartbeat timeout, small native packages (no kernel, no reboot),
each test with its own package name so that they do not depend on each other's order.  The slow
package's ``post_upgrade`` (an install scriptlet) keeps ``pacman -U`` busy long enough to interrupt
it; it leaves a marker on the board first, so the signal arrives while pacman is really running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import yaml
from boardsim import FACTORY_RELEASE, BoardSim, free_port
from itest import kabuild, make_repo
from publish_helpers import makepkg
from test_install import HOST, install

pytestmark = [pytest.mark.docker, pytest.mark.install]

SLOW = 3  # seconds post_upgrade sleeps when upgrading to -2: the window the signal arrives in
MARKER = "/run/kabuild-test-upgrading"


def build_slow_package(out: Path, name: str, rel: str) -> Path:
    """A tiny real package; upgrading to release 2 runs a post_upgrade that leaves MARKER and sleeps."""
    scratch = Path(tempfile.mkdtemp(prefix="kabuild-slow-"))
    os.chmod(scratch, 0o777)
    (scratch / "PKGBUILD").write_text(textwrap.dedent(f"""\
        pkgname={name}
        pkgver=1.0
        pkgrel={rel}
        pkgdesc="kabuild test package: a slow upgrade"
        arch=(any)
        license=(MIT)
        install={name}.install
        package() {{
          install -d "$pkgdir/usr/share/{name}"
          printf '%s\\n' '{name} 1.0-{rel}' > "$pkgdir/usr/share/{name}/version"
        }}
        """))
    (scratch / f"{name}.install").write_text(textwrap.dedent(f"""\
        post_upgrade() {{
          case "$1" in *-2) touch {MARKER}; sleep {SLOW};; esac
        }}
        """))
    for f in scratch.iterdir():
        os.chmod(f, 0o644)
    makepkg(scratch)
    found = list(scratch.glob(f"{name}-1.0-{rel}-any.pkg.tar.zst"))
    assert len(found) == 1, list(scratch.iterdir())
    out.mkdir(parents=True, exist_ok=True)
    target = out / found[0].name
    found[0].rename(target)
    subprocess.run(["rm", "-rf", str(scratch)], check=False)
    return target


@pytest.fixture(scope="module")
def board(engine, tmp_path_factory):
    b = BoardSim(engine.client, f"kbintr-{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("board"), free_port())
    b.start()
    yield b
    b.remove()


def setup(tmp_path: Path, board: BoardSim, name: str) -> Path:
    """A repository whose one package, ``name``, is installed on ``board``; release 1 and 2 published."""
    root = make_repo(tmp_path, HOST, ["steady"])
    manifest = root / "fleet" / f"{HOST}.yaml"
    text = manifest.read_text().replace("  - name: steady\n", f"  - name: {name}\n")
    manifest.write_text(text + f"publish:\n  repository: kbboard\n  key: throwaway\n  destination: build/{HOST}/repo\n"
                        "  keep: 5\n" + board.install_block(heartbeat_timeout=8))
    assert kabuild(root, "promote", HOST).code == 0
    from kabuild.files import atomic_write, digest_file
    from kabuild.publish import publish as do_publish
    from kabuild.publish import signing
    from kabuild.publish.gate import Candidate

    signer, home = signing.for_repository("throwaway", root / "build" / HOST, HOST, None, None)
    for rel in ("1", "2"):
        pkg = build_slow_package(tmp_path / "pkgs", name, rel)
        d = digest_file(pkg)
        do_publish([Candidate(name, pkg, d.sha256, d.b2sum)], repository="kbboard",
                   destination=f"build/{HOST}/repo", signer=signer, keep=5, root=root)
    atomic_write(root / "build" / HOST / "kbboard.asc", signing.export_public(home, signer.fingerprint))
    return root


def start_install(root: Path, *args: str) -> subprocess.Popen:
    """kabuild install in its own process group, as a shell starts a foreground job."""
    return subprocess.Popen([sys.executable, "-m", "kabuild", "--root", str(root), "install", HOST, "--yes", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(what: str, check, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def state(board: BoardSim, name: str) -> dict[str, str]:
    """What an install changes on the board: the package's files and database entry, lock, uploads."""
    return board.snapshot(f"/usr/share/{name}", "/var/lib/pacman/local", "/var/lib/kabuild", "/var/cache/kabuild")


def assert_one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("kabuild: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_ctrl_c_during_pacman_upgrade_puts_the_board_back(tmp_path, board):
    name = "slowa"
    root = setup(tmp_path, board, name)
    r = install(root, "--version", "1.0-1")
    assert r.code == 0, str(r)
    assert board.installed(name) == "1.0-1"
    before = state(board, name)

    proc = start_install(root, "--version", "1.0-2")
    wait_for("pacman -U to run post_upgrade", lambda: board.exec(f"test -e {MARKER}")[0] == 0
             or proc.poll() is not None)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground job
    out, err = proc.communicate(timeout=300)
    board.exec(f"rm -f {MARKER}")
    assert proc.returncode == 130, (proc.returncode, err)
    line = assert_one_error_line(err)
    assert "interrupted during pacman -U" in line and "put back as it was" in line, line
    assert board.installed(name) == "1.0-1"
    assert state(board, name) == before, "the board is not as it was before the interrupted upgrade"
    assert not (root / "build" / HOST / "install" / "journal.yaml").exists()

    r = install(root, "--version", "1.0-2")  # nothing left to recover: a plain upgrade
    assert r.code == 0 and "recovering" not in r.err, str(r)
    assert board.installed(name) == "1.0-2"
    assert f"upgraded {name} 1.0-1 → 1.0-2" in r.out, r.out


def test_sigterm_after_the_lock_leaves_nothing_or_a_rerun_recovers(tmp_path, board):
    name = "slowb"
    root = setup(tmp_path, board, name)
    before = state(board, name)
    proc = start_install(root, "--version", "1.0-1")
    seen: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if "locked the board" in line:
            break
    os.killpg(proc.pid, signal.SIGTERM)  # a service manager stopping kabuild
    _out, rest = proc.communicate(timeout=300)
    err = "".join(seen) + rest
    assert proc.returncode == 130, (proc.returncode, err)
    line = assert_one_error_line(err)
    assert "put back as it was" in line or "run `kabuild install kb` again" in line, line
    if "put back as it was" in line:
        assert state(board, name) == before
        assert not (root / "build" / HOST / "install" / "journal.yaml").exists()
    r = install(root, "--version", "1.0-1")
    assert r.code == 0, str(r)
    assert board.installed(name) == "1.0-1"
    assert f"first install of {name} 1.0-1" in r.out, r.out


def test_a_hand_edited_journal_at_rebooting_for_a_package_without_a_kernel_is_recovered(tmp_path, board):
    """A package without a kernel never reboots; a journal that says so (edited by hand) is recovered
    like an install that stopped before a reboot, not a crash (exit 70) on every later run."""
    name = "slowc"
    root = setup(tmp_path, board, name)
    r = install(root, "--version", "1.0-1", crash="after-pacman")
    assert r.code == -9, str(r)
    journal = root / "build" / HOST / "install" / "journal.yaml"
    data = yaml.safe_load(journal.read_text())
    assert data["step"] == "installed"
    data["step"] = "rebooting"
    journal.write_text(yaml.safe_dump(data))
    r = install(root, "--version", "1.0-1")
    assert r.code == 0, str(r)
    assert "recovering" in r.err and "carries no kernel" in r.err, r.err
    assert board.installed(name) == "1.0-1"
    assert board.release() == FACTORY_RELEASE
    assert not journal.exists()
