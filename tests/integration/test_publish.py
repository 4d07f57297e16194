"""Publish, end to end with real tools: makepkg-built packages, gpg keys, repo-add, and a real pacman
(SigLevel = Required, scratch root) that must accept what we publish and refuse what was tampered with."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kabuild.compare import acceptance
from kabuild.errors import ChecksumError, ConfigError, ExitCode, RefusalError
from kabuild.publish import CRASH_ENV, CRASH_STEPS, SSH_CONFIG_ENV, gate, publish
from kabuild.publish.signing import Signer, ensure_throwaway, export_public, generate_throwaway, passphrase_from

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from publish_helpers import (  # noqa: E402
    TEST_REPO,
    PacmanClient,
    build_package,
    have,
    tree_snapshot,
    write_report,
)

LOCK = "c" * 64
MISSING = have("pacman", "pacman-key", "repo-add", "makepkg", "gpg", "bsdtar", "zstd", "setpriv", "vercmp")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(bool(MISSING), reason=f"missing host tools: {', '.join(MISSING)}"),
    pytest.mark.skipif(os.geteuid() != 0, reason="pacman installs into a scratch root only as root"),
]


def _gpg(home: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", *args], input=input,
                          capture_output=True, check=True)


def _kill_agents(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    home = tmp_path_factory.mktemp("signer") / "gnupg"
    fpr = generate_throwaway(home, "kabuild test <test@kabuild.invalid>")
    yield home, fpr
    _kill_agents(home)


@pytest.fixture(scope="module")
def keyring(tmp_path_factory, key):
    """A pacman keyring (pacman-key --init) that trusts the test key, copied by each client."""
    home, fpr = key
    client = PacmanClient(tmp_path_factory.mktemp("keyring"), "")
    client.trust(export_public(home, fpr), fpr)
    client.close()
    return client.gpgdir


@pytest.fixture(scope="module")
def pkgs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pkgs")
    return {
        "hello-1.0": build_package(d, "kbtest-hello", "1.0"),
        "hello-1.1": build_package(d, "kbtest-hello", "1.1"),
        "hello-1.2": build_package(d, "kbtest-hello", "1.2"),
        "extra-1.0": build_package(d, "kbtest-extra", "1.0"),
        "hello-1.0-other": build_package(d / "other", "kbtest-hello", "1.0", content="different bytes, same version"),
    }


@pytest.fixture
def signer(key):
    home, fpr = key
    return Signer.open(home, fpr, None)


@pytest.fixture
def clients(tmp_path, keyring):
    made = []

    def make(repo_conf: str) -> PacmanClient:
        c = PacmanClient(tmp_path / f"pacman-{len(made)}", repo_conf, keyring=keyring)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def accepted(tmp_path: Path, *packages: Path):
    """A run directory with an all-accepted report for packages, passed through the real gate."""
    n = len(list(tmp_path.glob("run-*")))
    run_dir = tmp_path / f"run-{n}"
    write_report(run_dir, list(packages), lock_hash=LOCK)
    return gate(acceptance.load(run_dir / "report.json"), run_dir, LOCK), run_dir


def do_publish(tmp_path, signer, *packages, keep=3, destination="repo"):
    cands, _ = accepted(tmp_path, *packages)
    return publish(cands, repository=TEST_REPO, destination=destination, signer=signer, keep=keep, root=tmp_path)


def live_files(dest: Path) -> set[str]:
    return {p.name for p in dest.iterdir()}


# --------------------------------------------------------------------------- the happy path


def test_published_repository_installs_with_real_pacman(tmp_path, signer, key, pkgs, clients):
    progress = []
    cands, _ = accepted(tmp_path, pkgs["hello-1.0"], pkgs["extra-1.0"])
    res = publish(cands, repository=TEST_REPO, destination="repo", signer=signer, keep=3, root=tmp_path,
                  progress=progress.append)
    dest = tmp_path / "repo"
    assert dest.is_symlink() and os.readlink(dest) == f"repo.states/{res.state}"
    assert res.location == str(dest) and res.changed
    assert sorted(res.published) == sorted([pkgs["hello-1.0"].name, pkgs["extra-1.0"].name])
    assert res.pacman_conf == f"[{TEST_REPO}]\nSigLevel = Required\nServer = file://{dest}\n"
    for name in (f"{TEST_REPO}.db", f"{TEST_REPO}.db.sig", f"{TEST_REPO}.files", f"{TEST_REPO}.files.sig",
                 f"{TEST_REPO}.db.tar.gz.sig", pkgs["hello-1.0"].name + ".sig", pkgs["extra-1.0"].name + ".sig"):
        assert name in res.files and (dest / name).exists(), name
    assert sorted(p.name for p in (tmp_path / "repo.states").iterdir()) == [".lock", res.state]
    assert any("repo-add" in m for m in progress)

    client = clients(res.pacman_conf)
    r = client.sync_install("kbtest-hello", "kbtest-extra")
    assert r.ok, r.output
    assert client.installed_version("kbtest-hello") == "1.0-1"
    assert (client.root / "usr/share/kbtest-hello/hello.txt").read_text() == "hello from kbtest-hello 1.0-1\n"

    text = res.describe()
    assert str(dest) in text and res.pacman_conf.strip() in text and signer.fingerprint in text

    # Publishing the same bytes again changes nothing.
    before = tree_snapshot(dest)
    again = do_publish(tmp_path, signer, pkgs["hello-1.0"])
    assert not again.changed and again.state == res.state and again.unchanged == (pkgs["hello-1.0"].name,)
    assert tree_snapshot(dest) == before


def test_upgrades_keep_the_last_n_versions(tmp_path, signer, pkgs, clients):
    dest = tmp_path / "repo"
    res = do_publish(tmp_path, signer, pkgs["hello-1.0"], keep=2)
    client = clients(res.pacman_conf)
    assert client.sync_install("kbtest-hello").ok

    res = do_publish(tmp_path, signer, pkgs["hello-1.1"], keep=2)
    assert res.pruned == ()
    r = client.sync_install("kbtest-hello")
    assert r.ok, r.output
    assert client.installed_version("kbtest-hello") == "1.1-1"

    res = do_publish(tmp_path, signer, pkgs["hello-1.2"], keep=2)
    assert res.pruned == (pkgs["hello-1.0"].name,)
    files = live_files(dest)
    assert pkgs["hello-1.0"].name not in files and pkgs["hello-1.0"].name + ".sig" not in files
    assert {pkgs["hello-1.1"].name, pkgs["hello-1.2"].name} <= files
    db = subprocess.run(["bsdtar", "-tf", str(dest / f"{TEST_REPO}.db.tar.gz")], capture_output=True, text=True,
                        check=True).stdout.split()
    assert {e.rstrip("/").split("/")[0] for e in db} == {"kbtest-hello-1.2-1"}
    r = client.sync_install("kbtest-hello")
    assert r.ok, r.output
    assert client.installed_version("kbtest-hello") == "1.2-1"

    # A kept older version is still installable, signature checked (pacman -U fetches the .sig too).
    r = client.pacman("-U", "--noprogressbar", f"file://{dest}/{pkgs['hello-1.1'].name}")
    assert r.ok, r.output
    assert client.installed_version("kbtest-hello") == "1.1-1"

    # Publishing an older version than the repository's newest is a downgrade: refused, nothing changed.
    before = tree_snapshot(dest)
    with pytest.raises(RefusalError, match="downgrade"):
        do_publish(tmp_path, signer, pkgs["hello-1.0"], keep=2)
    assert tree_snapshot(dest) == before


# --------------------------------------------------------------------------- pacman refuses what is wrong


def test_package_tampered_after_signing_is_refused_by_pacman(tmp_path, signer, pkgs, clients):
    res = do_publish(tmp_path, signer, pkgs["hello-1.0"])
    target = tmp_path / "repo" / pkgs["hello-1.0"].name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    client = clients(res.pacman_conf)
    r = client.sync_install("kbtest-hello")
    assert not r.ok
    assert "PGP signature" in r.output or "invalid" in r.output, r.output
    assert client.installed_version("kbtest-hello") is None


@pytest.mark.parametrize("how", ["unknown-key", "known-untrusted-key", "no-signature"])
def test_database_not_signed_by_the_trusted_key_is_refused_by_pacman(tmp_path, signer, pkgs, clients, how):
    res = do_publish(tmp_path, signer, pkgs["hello-1.0"])
    db = tmp_path / "repo" / f"{TEST_REPO}.db.tar.gz"
    client = clients(res.pacman_conf)
    if how == "no-signature":
        (tmp_path / "repo" / f"{TEST_REPO}.db.tar.gz.sig").unlink()
    else:
        other_home = tmp_path / "other-gnupg"
        other_fpr = generate_throwaway(other_home, "someone else <else@kabuild.invalid>")
        try:
            Signer.open(other_home, other_fpr, None).sign_detached(db)
            if how == "known-untrusted-key":
                key = tmp_path / "other.asc"
                key.write_bytes(export_public(other_home, other_fpr))
                subprocess.run(["pacman-key", "--config", str(client.config), "--gpgdir", str(client.gpgdir),
                                "--add", str(key)], check=True, capture_output=True)
        finally:
            _kill_agents(other_home)
    r = client.sync_install("kbtest-hello")
    assert not r.ok
    assert "failed to synchronize" in r.output or "signature" in r.output, r.output
    assert client.installed_version("kbtest-hello") is None


# --------------------------------------------------------------------------- refusals before any change


def test_republishing_a_version_with_different_bytes_is_refused(tmp_path, signer, pkgs):
    do_publish(tmp_path, signer, pkgs["hello-1.0"])
    before = tree_snapshot(tmp_path / "repo")
    with pytest.raises(RefusalError, match="different contents") as info:
        do_publish(tmp_path, signer, pkgs["hello-1.0-other"])
    assert info.value.exit_code == ExitCode.REFUSED
    assert tree_snapshot(tmp_path / "repo") == before


def test_artifact_changed_between_gate_and_publish_is_refused(tmp_path, signer, pkgs):
    do_publish(tmp_path, signer, pkgs["hello-1.0"])
    dest = tmp_path / "repo"
    before = tree_snapshot(dest)
    cands, run_dir = accepted(tmp_path, pkgs["hello-1.1"])
    art = cands[0].path
    data = bytearray(art.read_bytes())
    data[-10] ^= 0x01
    art.write_bytes(bytes(data))
    with pytest.raises(RefusalError) as info:
        publish(cands, repository=TEST_REPO, destination="repo", signer=signer, keep=3, root=tmp_path)
    assert isinstance(info.value, ChecksumError) or "does not match" in str(info.value) or "changed" in str(info.value)
    assert info.value.exit_code == 3
    assert tree_snapshot(dest) == before


def test_plain_directory_destination_is_refused_and_empty_one_adopted(tmp_path, signer, pkgs, clients):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "something.txt").write_text("not ours")
    before = tree_snapshot(plain)
    with pytest.raises(ConfigError, match="plain directory"):
        do_publish(tmp_path, signer, pkgs["hello-1.0"], destination="plain")
    assert tree_snapshot(plain) == before

    empty = tmp_path / "empty"
    empty.mkdir()
    res = do_publish(tmp_path, signer, pkgs["hello-1.0"], destination=str(empty))
    assert empty.is_symlink()
    assert clients(res.pacman_conf).sync_install("kbtest-hello").ok


# --------------------------------------------------------------------------- keys


def _expired_key(home: Path) -> str:
    home.mkdir(mode=0o700)
    _gpg(home, "--passphrase", "", "--faked-system-time", "20200101T000000", "--quick-gen-key",
         "expired <expired@kabuild.invalid>", "ed25519", "sign", "1d")
    return _only_fpr(home)


def _revoked_key(home: Path) -> str:
    fpr = generate_throwaway(home, "revoked <revoked@kabuild.invalid>")
    cert = (home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
    _gpg(home, "--import", input=cert.replace(":-----BEGIN", "-----BEGIN").encode())
    return fpr


def _protected_key(home: Path, passphrase: str) -> str:
    home.mkdir(mode=0o700)
    _gpg(home, "--pinentry-mode", "loopback", "--passphrase", passphrase, "--quick-gen-key",
         "protected <protected@kabuild.invalid>", "ed25519", "sign", "1y")
    _kill_agents(home)  # forget the passphrase the agent cached while generating
    return _only_fpr(home)


def _public_only(home: Path, key) -> str:
    src_home, fpr = key
    home.mkdir(mode=0o700)
    _gpg(home, "--import", input=export_public(src_home, fpr))
    return fpr


def _only_fpr(home: Path) -> str:
    out = subprocess.run(["gpg", "--homedir", str(home), "--with-colons", "--list-keys"], capture_output=True,
                         text=True, check=True).stdout
    return [ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:")][0]


@pytest.mark.parametrize("problem, expected", [
    ("missing", "not found"),
    ("public-only", "secret key is missing"),
    ("expired", "expired"),
    ("revoked", "revoked"),
    ("wrong-passphrase", "wrong passphrase"),
    ("no-passphrase", "no passphrase is available"),
    ("not-a-fingerprint", "not a 40-hex-digit"),
    ("no-gnupghome", "does not exist"),
])
def test_key_problems_are_clear_errors_before_anything_changes(tmp_path, signer, key, pkgs, problem, expected):
    do_publish(tmp_path, signer, pkgs["hello-1.0"])
    dest = tmp_path / "repo"
    before = tree_snapshot(dest)
    home = tmp_path / "keys"
    passphrase = None
    if problem == "missing":
        fpr = generate_throwaway(home, "another <another@kabuild.invalid>")
        fpr = key[1]  # the good key's fingerprint, but not in this GNUPGHOME
    elif problem == "public-only":
        fpr = _public_only(home, key)
    elif problem == "expired":
        fpr = _expired_key(home)
    elif problem == "revoked":
        fpr = _revoked_key(home)
    elif problem == "wrong-passphrase":
        fpr = _protected_key(home, "correct horse")
        passphrase = "battery staple"
    elif problem == "no-passphrase":
        fpr = _protected_key(home, "correct horse")
    elif problem == "not-a-fingerprint":
        home, fpr = key[0], "demo@kabuild.invalid"
    else:
        fpr = key[1]
    try:
        cands, _ = accepted(tmp_path, pkgs["hello-1.1"])  # the gate passes; the key must stop us
        with pytest.raises(ConfigError) as info:
            s = Signer.open(home, fpr, passphrase)
            publish(cands, repository=TEST_REPO, destination="repo", signer=s, keep=3, root=tmp_path)
        assert info.value.exit_code == ExitCode.CONFIG
        assert expected in str(info.value)
        assert "\n" not in str(info.value)
    finally:
        if home.exists():
            _kill_agents(home)
    assert tree_snapshot(dest) == before


def test_protected_key_with_passphrase_file_publishes(tmp_path, pkgs, clients, keyring):
    home = tmp_path / "keys"
    fpr = _protected_key(home, "correct horse")
    try:
        pw_file = tmp_path / "passphrase"
        pw_file.write_text("correct horse\n")
        s = Signer.open(home, fpr, passphrase_from(None, pw_file))
        res = do_publish(tmp_path, s, pkgs["hello-1.0"])
        client = clients(res.pacman_conf)
        client.trust(export_public(home, fpr), fpr)
        r = client.sync_install("kbtest-hello")
        assert r.ok, r.output
    finally:
        _kill_agents(home)


def test_generate_throwaway_and_export(tmp_path):
    home = tmp_path / "g"
    fpr = generate_throwaway(home, "kabuild demo <demo@kabuild.invalid>")
    try:
        assert len(fpr) == 40 and fpr == fpr.upper()
        assert (home.stat().st_mode & 0o777) == 0o700
        pub = export_public(home, fpr)
        assert pub.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
        s = Signer.open(home, fpr, None)
        f = tmp_path / "file"
        f.write_bytes(b"data")
        sig = s.sign_detached(f)
        assert sig == tmp_path / "file.sig" and not sig.read_bytes().startswith(b"-----")
        s.verify_detached(f)
        f.write_bytes(b"dat4")
        with pytest.raises(ConfigError, match="does not verify"):
            s.verify_detached(f)
    finally:
        _kill_agents(home)


def test_ensure_throwaway_reuses_the_demo_key(tmp_path):
    home = tmp_path / "demo-gnupg"
    try:
        fpr = ensure_throwaway(home, "kabuild demo <demo@kabuild.invalid>")
        assert ensure_throwaway(home, "kabuild demo <demo@kabuild.invalid>") == fpr
        assert Signer.open(home, fpr, None).fingerprint == fpr
    finally:
        _kill_agents(home)
    expired_home = tmp_path / "expired"
    fpr_expired = _expired_key(expired_home)
    try:
        fresh = ensure_throwaway(expired_home, "kabuild demo <demo@kabuild.invalid>")
        assert fresh != fpr_expired
    finally:
        _kill_agents(expired_home)


def test_passphrase_from(tmp_path, monkeypatch):
    assert passphrase_from(None, None) is None
    monkeypatch.setenv("KB_TEST_PW", "s3cret")
    assert passphrase_from("KB_TEST_PW", None) == "s3cret"
    with pytest.raises(ConfigError, match="not set"):
        passphrase_from("KB_TEST_PW_UNSET", None)
    f = tmp_path / "pw"
    f.write_text("line one\n")
    assert passphrase_from(None, f) == "line one"
    with pytest.raises(ConfigError, match="not both"):
        passphrase_from("KB_TEST_PW", f)
    with pytest.raises(ConfigError, match="cannot read"):
        passphrase_from(None, tmp_path / "absent")


# --------------------------------------------------------------------------- crashes


def _publish_subprocess(tmp_path, key, packages, *, crash: str | None, destination="repo", extra_env=None):
    _, run_dir = accepted(tmp_path, *packages)
    args = {"run_dir": str(run_dir), "lock_hash": LOCK, "gnupghome": str(key[0]), "fingerprint": key[1],
            "repository": TEST_REPO, "destination": destination, "keep": 3, "root": str(tmp_path)}
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    if crash:
        env[CRASH_ENV] = crash
    env.update(extra_env or {})
    return subprocess.run([sys.executable, str(HERE / "publish_helpers.py"), json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=300)


def _assert_state_dir_clean(states: Path) -> None:
    entries = sorted(p.name for p in states.iterdir())
    assert len(entries) == 2 and entries[0] == ".lock", entries
    assert not list(states.parent.glob(f".{states.name[:-len('.states')]}.swap-*"))


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_kill_at_each_step_leaves_a_repository_pacman_accepts(tmp_path, signer, key, pkgs, clients, step):
    first = do_publish(tmp_path, signer, pkgs["hello-1.0"])
    old_snapshot = tree_snapshot(tmp_path / "repo")
    r = _publish_subprocess(tmp_path, key, [pkgs["hello-1.1"]], crash=step)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout, r.stderr)

    swapped = CRASH_STEPS.index(step) >= CRASH_STEPS.index("after-swap")
    live = os.readlink(tmp_path / "repo")
    if not swapped:
        assert live == f"repo.states/{first.state}"
        assert {k: v for k, v in tree_snapshot(tmp_path / "repo").items() if k.startswith(f"repo.states/{first.state}")} \
            == {k: v for k, v in old_snapshot.items() if k.startswith(f"repo.states/{first.state}")}
    client = clients(first.pacman_conf)
    res = client.sync_install("kbtest-hello")
    assert res.ok, res.output
    assert client.installed_version("kbtest-hello") == ("1.1-1" if swapped else "1.0-1")

    # The next publish cleans up whatever the killed one left and completes.
    r = _publish_subprocess(tmp_path, key, [pkgs["hello-1.1"]], crash=None)
    assert r.returncode == 0, r.stderr
    _assert_state_dir_clean(tmp_path / "repo.states")
    res = client.sync_install("kbtest-hello")
    assert res.ok, res.output
    assert client.installed_version("kbtest-hello") == "1.1-1"


@pytest.mark.parametrize("step", ["after-repo-add", "before-swap", "after-swap"])
def test_kill_during_the_first_publish_leaves_nothing_or_a_complete_repository(tmp_path, key, pkgs, clients, step):
    r = _publish_subprocess(tmp_path, key, [pkgs["hello-1.0"]], crash=step)
    assert r.returncode == -signal.SIGKILL
    dest = tmp_path / "repo"
    conf = f"[{TEST_REPO}]\nSigLevel = Required\nServer = file://{dest}\n"
    if step == "after-swap":
        assert clients(conf).sync_install("kbtest-hello").ok
    else:
        assert not os.path.lexists(dest)
    r = _publish_subprocess(tmp_path, key, [pkgs["hello-1.0"]], crash=None)
    assert r.returncode == 0, r.stderr
    _assert_state_dir_clean(tmp_path / "repo.states")
    assert clients(conf).sync_install("kbtest-hello").ok


def test_unknown_crash_step_is_a_config_error(tmp_path, signer, pkgs, monkeypatch):
    monkeypatch.setenv(CRASH_ENV, "somewhere")
    with pytest.raises(ConfigError, match=CRASH_ENV):
        do_publish(tmp_path, signer, pkgs["hello-1.0"])
    assert not os.path.lexists(tmp_path / "repo")


# --------------------------------------------------------------------------- remote over ssh


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A throwaway sshd on 127.0.0.1 (high port): throwaway host key, root login by a throwaway client key."""
    if not Path("/usr/sbin/sshd").exists() or have("ssh", "ssh-keygen", "rsync"):
        pytest.skip("openssh-server, openssh-client and rsync are needed for the remote publish test")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n")
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (d / "ssh_config").write_text(
        f"Host 127.0.0.1\n  IdentityFile {d / 'client_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {d / 'known_hosts'}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        ready = False
        for _ in range(100):
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {proc.stdout.read().decode()}")
            r = subprocess.run(["ssh", "-F", str(d / "ssh_config"), "-p", str(port), "-o", "BatchMode=yes",
                                "root@127.0.0.1", "true"], capture_output=True)
            if r.returncode == 0:
                ready = True
                break
            time.sleep(0.1)
        assert ready, "sshd did not accept the test key"
        yield {"port": port, "config": str(d / "ssh_config")}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_remote_publish_over_ssh(tmp_path, signer, key, pkgs, clients, sshd, monkeypatch):
    monkeypatch.setenv(SSH_CONFIG_ENV, sshd["config"])
    remote_dir = tmp_path / "remote" / "srv"
    remote_dir.mkdir(parents=True)
    url = f"ssh://root@127.0.0.1:{sshd['port']}{remote_dir}/repo"
    res = do_publish(tmp_path, signer, pkgs["hello-1.0"], destination=url, keep=2)
    assert res.location == url and res.changed
    assert "SigLevel = Required" in res.pacman_conf
    dest = remote_dir / "repo"
    assert dest.is_symlink() and os.readlink(dest) == f"repo.states/{res.state}"
    local_conf = f"[{TEST_REPO}]\nSigLevel = Required\nServer = file://{dest}\n"
    client = clients(local_conf)
    r = client.sync_install("kbtest-hello")
    assert r.ok, r.output

    res2 = do_publish(tmp_path, signer, pkgs["hello-1.1"], destination=url, keep=2)
    res3 = do_publish(tmp_path, signer, pkgs["hello-1.2"], destination=url, keep=2)
    assert res3.pruned == (pkgs["hello-1.0"].name,)
    assert pkgs["hello-1.0"].name not in live_files(dest) and pkgs["hello-1.1"].name in live_files(dest)
    assert sorted(p.name for p in (remote_dir / "repo.states").iterdir()) == [res3.state]
    r = client.sync_install("kbtest-hello")
    assert r.ok, r.output
    assert client.installed_version("kbtest-hello") == "1.2-1"
    assert res2.state != res3.state

    # Nothing new: no remote change.
    before = tree_snapshot(dest)
    assert not do_publish(tmp_path, signer, pkgs["hello-1.2"], destination=url, keep=2).changed
    assert tree_snapshot(dest) == before


@pytest.mark.parametrize("step", ["after-sign", "before-swap", "after-swap"])
def test_remote_kill_leaves_a_repository_pacman_accepts(tmp_path, signer, key, pkgs, clients, sshd, monkeypatch, step):
    monkeypatch.setenv(SSH_CONFIG_ENV, sshd["config"])
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    url = f"ssh://root@127.0.0.1:{sshd['port']}{remote_dir}/repo"
    first = do_publish(tmp_path, signer, pkgs["hello-1.0"], destination=url)
    r = _publish_subprocess(tmp_path, key, [pkgs["hello-1.1"]], crash=step, destination=url)
    assert r.returncode == -signal.SIGKILL, r.stderr
    dest = remote_dir / "repo"
    client = clients(f"[{TEST_REPO}]\nSigLevel = Required\nServer = file://{dest}\n")
    res = client.sync_install("kbtest-hello")
    assert res.ok, res.output
    swapped = step == "after-swap"
    assert client.installed_version("kbtest-hello") == ("1.1-1" if swapped else "1.0-1")
    if not swapped:
        assert os.readlink(dest) == f"repo.states/{first.state}"
    r = _publish_subprocess(tmp_path, key, [pkgs["hello-1.1"]], crash=None, destination=url)
    assert r.returncode == 0, r.stderr
    assert len(list((remote_dir / "repo.states").iterdir())) == 1
    assert client.sync_install("kbtest-hello").ok
    assert client.installed_version("kbtest-hello") == "1.1-1"
