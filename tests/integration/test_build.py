"""`kabuild build` against a real Docker engine with real makepkg (issue: clean container builds)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import docker.errors
import pytest
import yaml
from itest import copy_real_repo, kabuild, leftovers, make_repo, running_of

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _lock(root: Path, host: str) -> dict:
    return yaml.safe_load((root / "build" / host / "v1.0" / "manifest.lock").read_text())


def _log_from_error(err: str) -> Path:
    line, = [ln for ln in err.splitlines() if ln.startswith("kabuild: error:")]
    return Path(line.rsplit("full log: ", 1)[1].strip())


def test_native_build_records_hashes_in_the_lock(tmp_path, engine):
    root = make_repo(tmp_path, "fx", ["steady"])
    r = kabuild(root, "build", "fx")
    assert r.code == 0, r
    build = _lock(root, "fx")["build"]
    (name, rec), = build["packages"].items()
    assert name.startswith("steady-1-1-x86_64.pkg.tar")
    pkg = root / "build" / "fx" / "v1.0" / "last-build" / name
    import hashlib
    data = pkg.read_bytes()
    assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["b2sum"] == hashlib.blake2b(data).hexdigest()
    assert rec["size"] == len(data)
    assert build["node"] == "local" and build["fell_back"] is False
    assert build["image"]["recipe_hash"]
    assert not leftovers(engine)


@pytest.mark.emulation
def test_demo_builds_for_aarch64_in_a_clean_container(tmp_path, engine):
    root = copy_real_repo(tmp_path)
    assert kabuild(root, "promote", "demo").code == 0
    r = kabuild(root, "build", "demo", "--node", "local", "--json")
    assert r.code == 0, r
    import json
    data = json.loads(r.out)
    (name, rec), = data["packages"].items()
    assert name == "kabuild-hello-1.0-1-aarch64.pkg.tar.zst"
    pkg = Path(data["out"]) / name
    import subprocess
    listing = subprocess.run(["bsdtar", "-tf", str(pkg)], capture_output=True, text=True, check=True).stdout.split()
    assert {".PKGINFO", ".BUILDINFO", ".MTREE", "usr/bin/kabuild-hello"} <= set(listing)
    info = subprocess.run(["file", "-b", "-"], input=subprocess.run(
        ["bsdtar", "-xOf", str(pkg), "usr/bin/kabuild-hello"], capture_output=True, check=True).stdout,
        capture_output=True, check=True).stdout.decode()
    assert "aarch64" in info or "ARM aarch64" in info, info
    # progress was shown while it ran
    assert "Starting build()" in r.err
    assert not leftovers(engine, "demo")


def test_network_is_unreachable_from_a_build(tmp_path, engine):
    root = make_repo(tmp_path, "fx", ["net-probe"])
    r = kabuild(root, "build", "fx")
    assert r.code == 4, r
    log = _log_from_error(r.err).read_text()
    assert "kabuild-fixture: network unreachable" in log
    assert "NETWORK REACHABLE" not in log
    assert not leftovers(engine)


def test_a_build_cannot_read_host_files(tmp_path, engine):
    secret = Path("/tmp/kabuild-host-secret")
    gnupg_secret = Path("/root/.gnupg/kabuild-host-secret")
    gnupg_secret.parent.mkdir(mode=0o700, exist_ok=True)
    token = f"kabuild-secret-{os.getpid()}"
    secret.write_text(token)
    gnupg_secret.write_text(token)
    try:
        root = make_repo(tmp_path, "fx", ["host-secret"])
        r = kabuild(root, "build", "fx")
        assert r.code == 4, r
        log = _log_from_error(r.err).read_text()
        assert "kabuild-fixture: no host file is visible" in log
        assert token not in log
    finally:
        secret.unlink(missing_ok=True)
        gnupg_secret.unlink(missing_ok=True)


def test_failing_build_exits_4_with_log_and_leaves_no_container(tmp_path, engine):
    root = make_repo(tmp_path, "fx", ["fails"])
    r = kabuild(root, "build", "fx")
    assert r.code == 4, r
    err_lines = [ln for ln in r.err.splitlines() if ln.startswith("kabuild: error:")]
    assert len(err_lines) == 1
    assert "failing on purpose" in err_lines[0]
    log_path = err_lines[0].rsplit("full log: ", 1)[1].strip()
    assert Path(log_path).is_file()
    assert "Traceback" not in r.err
    assert not leftovers(engine)
    assert "build" not in _lock(root, "fx")


def test_timeout_kills_the_build_and_removes_the_container(tmp_path, engine):
    root = make_repo(tmp_path, "fx", ["sleeper"], timeout=15)
    r = kabuild(root, "build", "fx")
    assert r.code == 4, r
    assert "timed out after 15s" in r.err
    assert not leftovers(engine)


def test_wrong_source_checksum_is_refused_before_any_container(tmp_path, engine):
    root = make_repo(tmp_path, "fx", ["steady"])
    tarball = root / "fleet" / "sources" / "kabuild-hello-1.0.tar.gz"
    tarball.write_bytes(tarball.read_bytes() + b"tampered")
    since = int(time.time()) - 1
    r = kabuild(root, "build", "fx")
    until = int(time.time()) + 1
    assert r.code == 3, r
    assert "sha256 mismatch" in r.err and "4b6efb132d7cced2508f372ce6aab1e6dc1b58a1c50923326839c5a5f565299e" in r.err
    events = list(engine.client.events(since=since, until=until, decode=True,
                                       filters={"type": "container", "event": "create"}))
    mine = [e for e in events if e.get("Actor", {}).get("Attributes", {}).get("org.kabuild.host") == "fx"]
    assert mine == []


def test_unreachable_node_falls_back_and_says_so(tmp_path, engine):
    root = make_repo(tmp_path, "fx", ["steady"], control="dead", fallback="local")
    r = kabuild(root, "build", "fx")
    assert r.code == 0, r
    assert "node dead is unreachable" in r.err and "using fallback node local" in r.err
    build = _lock(root, "fx")["build"]
    assert build["node"] == "local" and build["requested_node"] == "dead" and build["fell_back"] is True


def test_unreachable_node_without_fallback_is_a_clear_error(tmp_path, engine):
    root = make_repo(tmp_path, "fx", ["steady"], control="dead", fallback=None)
    r = kabuild(root, "build", "fx")
    assert r.code == 5, r
    assert "build node dead" in r.err and "does not answer" in r.err
    assert "Traceback" not in r.err


def test_same_build_on_a_second_engine_works_unchanged(tmp_path, engine, engine2):
    root = make_repo(tmp_path, "fx", ["steady"])
    first = kabuild(root, "build", "fx", "--node", "local")
    assert first.code == 0, first
    one = _lock(root, "fx")["build"]["packages"]
    second = kabuild(root, "build", "fx", "--node", "local-2")
    assert second.code == 0, second
    two = _lock(root, "fx")["build"]
    assert two["node"] == "local-2"
    assert two["packages"] == one  # same image content, same SOURCE_DATE_EPOCH: same bytes
    assert not leftovers(engine2)


def test_drift_blocks_the_build(tmp_path, engine):
    root = copy_real_repo(tmp_path)
    assert kabuild(root, "promote", "demo").code == 0
    copy = root / "fleet" / "pkgbuilds" / "kabuild-hello" / "demo-v1.0-cumulative.patch"
    copy.write_text(copy.read_text() + "\n")
    r = kabuild(root, "build", "demo")
    assert r.code == 3, r
    assert "drift" in r.err


def test_dependencies_come_from_a_cached_layer_and_the_build_stays_offline(tmp_path, engine):
    for old in engine.client.images.list(filters={"label": "org.kabuild.dependencies=bc"}):
        engine.client.images.remove(old.id, force=True)  # start without the cached layer
    root = make_repo(tmp_path, "fx", ["needs-bc"])
    first = kabuild(root, "build", "fx")
    assert first.code == 0, first
    build = _lock(root, "fx")["build"]
    (name, rec), = build["packages"].items()
    pkg = root / "build" / "fx" / "v1.0" / "last-build" / name
    import subprocess
    answer = subprocess.run(["bsdtar", "-xOf", str(pkg), "usr/share/needs-bc/answer"], capture_output=True,
                            text=True, check=True).stdout
    assert answer.strip() == "42"
    assert ":deps-" in rec["image"]
    image = engine.client.images.get(rec["image"])
    assert image.labels["org.kabuild.dependencies"] == "bc"
    assert "bc=" in image.labels["org.kabuild.packages"]  # the toolchain list names what was added
    # the second build reuses the layer: no dependency step, so no network at all
    second = kabuild(root, "build", "fx")
    assert second.code == 0, second
    assert "installing build dependencies" in first.err and "installing build dependencies" not in second.err
    assert not leftovers(engine)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_removes_the_build_container(tmp_path, engine, sig):
    import signal
    import subprocess
    import sys

    root = make_repo(tmp_path, "fx", ["sleeper"], timeout=600)
    proc = subprocess.Popen([sys.executable, "-m", "kabuild", "--root", str(root), "build", "fx"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # wait (bounded) until the build container runs
            if running_of(engine, proc.pid):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the build container never started")
        time.sleep(1)
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert leftovers(engine) == []


def test_image_ship_sends_an_image_to_a_node_without_a_registry(tmp_path, engine, engine2):
    import json

    root = make_repo(tmp_path, "fx", ["steady"])
    built = kabuild(root, "image", "build", "--arch", "x86_64", "--node", "local", "--json")
    assert built.code == 0, built
    info = json.loads(built.out)
    assert info["recipe_hash"] and any(p.startswith("makepkg ") for p in info["packages"])
    with contextlib.suppress(docker.errors.ImageNotFound):  # not there yet: nothing to remove
        engine2.client.images.remove(info["tag"], force=True)
    with pytest.raises(docker.errors.ImageNotFound):  # so the ship below really ships
        engine2.client.images.get(info["tag"])
    r = kabuild(root, "image", "ship", "local-2", "--arch", "x86_64")
    assert r.code == 0, r
    shipped = engine2.client.images.get(info["tag"])
    assert shipped.labels["org.kabuild.recipe"] == info["recipe_hash"]
    # the layers are the same bytes on both engines
    assert shipped.attrs["RootFS"]["Layers"] == engine.client.images.get(info["tag"]).attrs["RootFS"]["Layers"]
    again = kabuild(root, "image", "ship", "local-2", "--arch", "x86_64")
    assert again.code == 0 and "already on node local-2" in again.err


@pytest.mark.emulation
@pytest.mark.root
def test_missing_emulation_is_a_clear_error(tmp_path, engine):
    import subprocess

    root = copy_real_repo(tmp_path)
    assert kabuild(root, "promote", "demo").code == 0
    subprocess.run(["update-binfmts", "--disable", "qemu-aarch64"], check=True, capture_output=True)
    try:
        r = kabuild(root, "build", "demo", "--node", "local")
    finally:
        subprocess.run(["bash", "containers/host-setup.sh", "binfmt"], cwd=str(Path(__file__).resolve().parents[2]),
                       check=True, capture_output=True)
    assert r.code == 5, r
    assert "cannot run aarch64 containers" in r.err and "update-binfmts --enable qemu-aarch64" in r.err
    assert "Traceback" not in r.err
