"""`kabuild image pin archlinuxarm`: a test-made root tarball, detached signature and keys, verified with
the real gpg (python-gnupg) in a temporary home; the recipe is written only when everything verified."""

from __future__ import annotations

import functools
import http.server
import io
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import gnupg
import pytest

from kabuild.build import images, rootfs
from kabuild.config.manifest import Flavor
from kabuild.errors import ConfigError, ExitCode, RefusalError
from kabuild.publish import signing

REPO_ROOT = Path(__file__).resolve().parents[2]


def _agents(fragment: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "gpg-agent" in line and fragment in line]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two signing keys (the Arch Linux ARM build key and another), a tarball signed by the first."""
    base = tmp_path_factory.mktemp("alarm")
    homes, out = [], {}
    try:
        for name in ("right", "wrong"):
            home = base / f"gnupg-{name}"
            homes.append(home)
            fpr = signing.generate_throwaway(home, f"{name} build key <{name}@localhost>")
            (base / f"{name}.asc").write_bytes(signing.export_public(home, fpr))
            out[name] = (fpr, base / f"{name}.asc")
        tarball = base / "ArchLinuxARM-aarch64-latest.tar.gz"
        with tarfile.open(tarball, "w:gz") as tf:
            data = b"root:x:0:0::/root:/bin/bash\n"
            info = tarfile.TarInfo("./etc/passwd")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        gpg = gnupg.GPG(gnupghome=str(homes[0]))
        with open(tarball, "rb") as f:
            sig = gpg.sign_file(f, keyid=out["right"][0], detach=True, binary=True)
        assert sig.data, sig.stderr
        (base / (tarball.name + ".sig")).write_bytes(sig.data)
        yield {"base": base, "tarball": tarball, "sig": base / (tarball.name + ".sig"), **out}
    finally:
        for home in homes:
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)


@pytest.fixture
def root(tmp_path):
    (tmp_path / "fleet").mkdir()
    (tmp_path / "fleet" / "nodes.yaml").write_text((REPO_ROOT / "fleet" / "nodes.yaml").read_text())
    shutil.copytree(REPO_ROOT / "containers", tmp_path / "containers")
    return tmp_path


def _recipe(root: Path) -> bytes:
    return (root / rootfs.RECIPE).read_bytes()


def test_the_right_key_pins_the_tarball_and_no_agent_is_left(root, keys):
    before = _recipe(root)
    assert images.unbuildable(root, Flavor.ARCHLINUXARM) is not None  # unpinned: refused
    pinned = rootfs.pin(root, tarball=str(keys["tarball"]), signature=str(keys["sig"]), key=keys["right"][1],
                        fingerprint=keys["right"][0].lower())
    import hashlib
    sha = hashlib.sha256(keys["tarball"].read_bytes()).hexdigest()
    assert pinned.changed and pinned.rootfs_sha256 == sha and pinned.fingerprint == keys["right"][0]
    assert "right build key" in pinned.signer
    values = rootfs.recipe_values((root / rootfs.RECIPE).read_text())
    assert values["rootfs_sha256"] == sha and values["signing_key_fingerprint"] == keys["right"][0]
    # only the two pins changed; every comment and the URLs stay
    old, new = before.decode().splitlines(), _recipe(root).decode().splitlines()
    changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert [b.split(":")[0] for _, b in changed] == ["rootfs_sha256", "signing_key_fingerprint"], changed
    assert images.unbuildable(root, Flavor.ARCHLINUXARM) is None
    assert not _agents("kabuild-pin-gnupg"), "a gpg-agent of a pin's temporary home is still running"
    # a later pin checks against the pinned key without --fingerprint
    again = rootfs.pin(root, tarball=str(keys["tarball"]), signature=str(keys["sig"]), key=keys["right"][1])
    assert not again.changed and again.fingerprint == keys["right"][0]


@pytest.mark.parametrize("case", ["wrong key", "wrong key named", "tampered tarball", "wrong fingerprint",
                                  "pinned fingerprint differs", "nothing confirmed"])
def test_a_mismatch_is_refused_and_the_recipe_is_unchanged(root, keys, tmp_path, case):
    tarball, key, fpr = keys["tarball"], keys["right"][1], keys["right"][0]
    if case == "wrong key":
        key = keys["wrong"][1]
    elif case == "wrong key named":  # the other key, confirmed as the one to trust: the signature is not its
        key, fpr = keys["wrong"][1], keys["wrong"][0]
    elif case == "tampered tarball":
        tarball = tmp_path / tarball.name
        data = bytearray(keys["tarball"].read_bytes())
        data[len(data) // 2] ^= 0xFF
        tarball.write_bytes(bytes(data))
    elif case == "wrong fingerprint":
        fpr = "0123456789ABCDEF0123456789ABCDEF01234567"
    elif case == "pinned fingerprint differs":
        path = root / rootfs.RECIPE
        path.write_text(rootfs.with_values(path.read_text(), {"signing_key_fingerprint": keys["wrong"][0]}))
        fpr = None
    else:
        fpr = None
    before = _recipe(root)
    with pytest.raises(RefusalError) as e:
        rootfs.pin(root, tarball=str(tarball), signature=str(keys["sig"]), key=key, fingerprint=fpr)
    assert e.value.exit_code == ExitCode.REFUSED
    assert "recipe is unchanged" in str(e.value) or "was not pinned" in str(e.value), str(e.value)
    if case == "nothing confirmed":
        assert keys["right"][0] in str(e.value) and "--fingerprint" in str(e.value)
    assert _recipe(root) == before
    assert not _agents("kabuild-pin-gnupg")


def _error(err: str) -> str:
    """The one error line (progress lines go to stderr too), never a traceback."""
    errors = [line for line in err.splitlines() if line.startswith("kabuild: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_the_cli_pins_from_urls_and_refuses_in_one_line(root, keys, capsys):
    from kabuild.cli import run_cli

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(keys["base"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{keys['tarball'].name}"
        base = ["--root", str(root), "image", "pin", "archlinuxarm", "--key", str(keys["right"][1])]
        capsys.readouterr()
        code = run_cli([*base, "--tarball", url, "--signature", url + ".sig", "--fingerprint", keys["right"][0]])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "signature good: right build key" in out.out and "pinned: rootfs_sha256" in out.out
        values = rootfs.recipe_values((root / rootfs.RECIPE).read_text())
        assert values["rootfs_url"] == url and values["signature_url"] == url + ".sig"  # where the bytes came from
        before = _recipe(root)
        code = run_cli([*base, "--tarball", url, "--signature", url + ".sig", "--mirror", "ftp://mirror/$repo"])
        err = capsys.readouterr().err
        assert code == 2 and "expected an http, https or file URL" in _error(err)
        code = run_cli([*base[:-1], str(keys["wrong"][1]), "--tarball", url, "--signature", url + ".sig"])
        err = capsys.readouterr().err
        assert code == 3 and "does not hold the key" in _error(err), err
        assert _recipe(root) == before
        missing = run_cli([*base, "--tarball", url + ".nothere", "--signature", url + ".sig"])
        assert missing == 5 and "download failed" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


def test_a_pinned_mirror_is_written_and_checked(root, keys):
    mirror = "http://archive.example/aarm/repos/2026/01/01/$arch/$repo"
    pinned = rootfs.pin(root, tarball=str(keys["tarball"]), signature=str(keys["sig"]), key=keys["right"][1],
                        fingerprint=keys["right"][0], mirror=mirror)
    assert pinned.mirror == mirror and rootfs.recipe_values(_recipe(root).decode())["mirror"] == mirror
    assert rootfs.pinning_problem(root) is None
    for bad, words in (("http://archive.example/aarm/", "$repo"), ("file://host/srv/$repo", "absolute path"),
                       ("https://mirror/$repo; rm -rf /", "character")):
        problem = rootfs.mirror_problem(bad)
        assert problem and words in problem, (bad, problem)
        with pytest.raises(ConfigError):
            rootfs.pin(root, tarball=str(keys["tarball"]), signature=str(keys["sig"]), key=keys["right"][1],
                       mirror=bad)
    path = root / rootfs.RECIPE
    path.write_text(rootfs.with_values(path.read_text(), {"mirror": "gopher://x/$repo"}))
    assert "gopher" in str(images.unbuildable(root, Flavor.ARCHLINUXARM))


def test_status_says_once_what_never_ran_here():
    from kabuild.config import manifest as fleet
    from kabuild.report.status import host_status

    m, nodes = fleet.load(REPO_ROOT, "fresnel")
    st = host_status(REPO_ROOT, m, nodes).to_dict()
    assert st["untested"] == [rootfs.UNTESTED_HERE]
    demo, demo_nodes = fleet.load(REPO_ROOT, "demo")
    assert host_status(REPO_ROOT, demo, demo_nodes).to_dict()["untested"] == []
