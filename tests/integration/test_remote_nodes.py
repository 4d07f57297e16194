"""Remote build nodes against real daemons started on this machine (issue: remote build nodes).

The session fixture ``remote_fleet`` (conftest.py, remote_nodes.py) starts an sshd in front of a
dockerd of its own and a ``--tlsverify`` dockerd with openssl-made certificates; both start without
any image, so shipping the build image to them is part of what is tested.  Fault tests use loopback
ports only.  The emulated aarch64 demo runs twice (ssh, TLS); the fault tests use native fixtures.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from itest import NODES, REPO, copy_real_repo, kabuild, leftovers, make_repo, running_of

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DEMO_REF = REPO / "references" / "demo" / "kabuild-hello" / "reference.yaml"
HANG_GUARD = 900  # a hung kabuild fails the test instead of the suite; never a timing assertion


def _only_kabuild_lines(err: str) -> None:
    """Nothing but kabuild's own lines on stderr: no ssh text, no traceback, no 'Exception ignored'."""
    stray = [line for line in err.splitlines() if line.strip() and not line.startswith("kabuild: ")]
    assert not stray, err
    assert "Traceback" not in err and "Exception" not in err, err


def _one_error(err: str) -> str:
    _only_kabuild_lines(err)
    errors = [line for line in err.splitlines() if line.startswith("kabuild: error: ")]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0], err
    return errors[0]


def _image_id(engine, tag: str) -> str:
    return engine.client.images.get(tag).id


def _demo_on(tmp_path: Path, fleet, control: str, experiment: str) -> Path:
    root = fleet.add_to(copy_real_repo(tmp_path))
    manifest = root / "fleet" / "demo.yaml"
    text = manifest.read_text().replace("control: local\n", f"control: {control}\n")
    manifest.write_text(text.replace("experiment: local-2", f"experiment: {experiment}").replace(
        "    fallback: local\n", ""))
    assert kabuild(root, "promote", "demo").code == 0
    return root


@pytest.mark.emulation
def test_demo_built_on_the_ssh_node_and_the_tls_node_is_accepted_and_identical_to_the_reference(
        tmp_path, remote_fleet):
    """One demo reproduce over both remote transports: build 1 on the ssh node, build 2 on the TLS node
    (with environment CA bundles set that would refuse its certificate), both byte-identical to the
    committed reference; the image goes to each fresh node once, by image ID, and no container stays."""
    fleet = remote_fleet
    root = _demo_on(tmp_path, fleet, "ssh", "tls")
    wrong = str(fleet.other_ca.ca)  # a CA bundle that would refuse the engine's certificate
    env = {"REQUESTS_CA_BUNDLE": wrong, "CURL_CA_BUNDLE": wrong}
    r = kabuild(root, "reproduce", "demo", "--json", timeout=HANG_GUARD, env=env)
    assert r.code == 0, r
    _only_kabuild_lines(r.err)
    data = json.loads(r.out)
    (pkg,) = data["packages"]
    committed = yaml.safe_load(DEMO_REF.read_text())["artifacts"][0]
    assert pkg["verdict"] == "accepted" and pkg["reproducible"] is True and pkg["parity"] is True
    # byte-identical to the committed reference, built on two remote nodes
    assert pkg["build1"]["sha256"] == pkg["build2"]["sha256"] == committed["sha256"]
    assert data["nodes"]["build1"] == {**data["nodes"]["build1"], "node": "ssh", "requested": "ssh", "fell_back": False}
    assert data["nodes"]["build2"] == {**data["nodes"]["build2"], "node": "tls", "requested": "tls", "fell_back": False}
    assert data["nodes"]["same_engine"] is False
    # one image for both builds: made on the control node, shipped to the other by image ID
    (use,) = data["images"]
    assert pkg["image_id"] == use["id"]
    for dockerd in (fleet.ssh_dockerd, fleet.tls_dockerd):
        assert dockerd.docker("image", "inspect", "--format", "{{.Id}}", use["tag"]).stdout.strip() == use["id"]
        assert dockerd.containers() == []
    if "shipping kabuild/debian-aarch64" in r.err:  # a fresh node: the image went there with progress
        assert "to tls" in r.err

    # the same engines and image IDs: answered from the run; the node now lists the image
    again = kabuild(root, "reproduce", "demo", "--json", timeout=HANG_GUARD, env=env)
    assert again.code == 0, again
    assert json.loads(again.out)["answered_from"] == data["run_id"]
    nodes = kabuild(root, "nodes", "ssh", "--json")
    assert nodes.code == 0, nodes
    (seen,) = json.loads(nodes.out)
    assert seen["reachable"] and use["tag"] in seen["images"]
    assert seen["emulation"].startswith("aarch64: yes") and seen["arch"] == "x86_64"


def test_an_unknown_host_key_is_one_line_and_never_a_prompt(tmp_path, remote_fleet):
    root = make_repo(tmp_path, "fx", ["steady"], nodes=remote_fleet.nodes_yaml("ssh-unknown-key"))
    # on a terminal, where ssh would ask "Are you sure you want to continue connecting (yes/no)?"
    cmd = shlex.join([sys.executable, "-m", "kabuild", "--root", str(root), "build", "fx", "--node", "ssh-unknown-key"])
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 5, p
    lines = [line for line in p.stdout.replace("\r", "").splitlines() if line.strip()]
    assert "yes/no" not in p.stdout and "continue connecting" not in p.stdout
    errors = [line for line in lines if line.startswith("kabuild: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and all(line.startswith("kabuild: ") for line in lines), lines
    port = remote_fleet.sshd.port
    assert "is not in" in errors[0] and "empty_known_hosts" in errors[0]
    assert f"ssh-keyscan -p {port} 127.0.0.1 >> " in errors[0]


def test_a_silent_node_does_not_answer_and_the_fallback_takes_over(tmp_path, remote_fleet, engine, engine2):
    root = make_repo(tmp_path, "fx", ["steady"], control="local", experiment="silent", fallback="local-2",
                     nodes=remote_fleet.nodes_yaml())
    built = kabuild(root, "build", "fx", "--node", "silent", timeout=120)
    assert built.code == 5, built
    line = _one_error(built.err)
    assert "build node silent" in line and "does not answer" in line and "timed out after 2s" in line
    tls = kabuild(root, "build", "fx", "--node", "silent-tls", timeout=120)
    assert tls.code == 5 and "does not answer: it accepted the connection but sent no answer" in _one_error(tls.err)

    r = kabuild(root, "reproduce", "fx", "--vary=hostname", "--json", timeout=HANG_GUARD)
    assert r.code == 0, r
    data = json.loads(r.out)
    assert data["nodes"]["build2"] == {**data["nodes"]["build2"], "node": "local-2", "requested": "silent",
                                       "fell_back": True}
    assert "timed out after 2s" in data["nodes"]["build2"]["reason"]
    assert data["nodes"]["same_engine"] is False
    shown = kabuild(root, "report", "fx")
    assert shown.code == 0, shown
    head = shown.out.splitlines()[0]
    assert "ACCEPTED" in head and "build 2 ran on fallback local-2 (silent did not answer)" in head, head
    md = (root / "build" / "fx" / "v1.0" / "runs" / "latest" / "report.md").read_text().splitlines()[0]
    assert "build 2 ran on fallback local-2 (silent did not answer)" in md
    assert not leftovers(engine) and not leftovers(engine2)


def test_the_port_of_an_ssh_config_file_is_honoured(tmp_path, remote_fleet):
    root = make_repo(tmp_path, "fx", ["steady"], nodes=remote_fleet.nodes_yaml())
    assert "url: ssh://kbalias\n" in (root / "fleet" / "nodes.yaml").read_text()  # no port in the URL
    r = kabuild(root, "nodes", "ssh-alias", "--json", timeout=120)
    assert r.code == 0, r
    (seen,) = json.loads(r.out)
    assert seen["reachable"] is True and seen["arch"] == "x86_64", seen


def test_each_tls_failure_names_its_cause_in_one_line(tmp_path, remote_fleet):
    root = make_repo(tmp_path, "fx", ["steady"], nodes=remote_fleet.nodes_yaml())
    r = kabuild(root, "nodes", "tls", "tls-plain-port", "--json", timeout=120)
    assert r.code == 5, r  # some node does not answer
    seen = {c["name"]: c for c in json.loads(r.out)}
    assert seen["tls"]["reachable"] is True
    # the variants reach the tls node's engine with other files: one engine has one name in a nodes.yaml
    for variant in ("tls-wrong-ca", "tls-foreign-cert", "tls-key-mismatch"):
        (root / "fleet" / "nodes.yaml").write_text(NODES + remote_fleet.nodes_yaml(variant))
        v = kabuild(root, "nodes", variant, "--json", timeout=120)
        assert v.code == 5, v
        seen.update({c["name"]: c for c in json.loads(v.out)})
    o = remote_fleet.other_ca
    causes = {
        "tls-wrong-ca": f"CA mismatch: the engine's certificate is not signed by tls.ca {o.ca}",
        "tls-foreign-cert": f"client certificate refused: the engine does not accept tls.cert {o.client_cert}",
        "tls-key-mismatch": f"key mismatch: tls.key {o.client_key} does not belong to tls.cert",
        "tls-plain-port": "not a TLS port: 127.0.0.1:",
    }
    for name, cause in causes.items():
        assert seen[name]["reachable"] is False and cause in seen[name]["reason"], seen[name]
        assert "\n" not in seen[name]["reason"]
    # a command that uses such a node: the whole cause on one line (no truncation), its exit code
    for name, code in (("tls-wrong-ca", 5), ("tls-key-mismatch", 2)):
        (root / "fleet" / "nodes.yaml").write_text(NODES + remote_fleet.nodes_yaml(name))
        b = kabuild(root, "build", "fx", "--node", name, timeout=120)
        assert b.code == code, b
        assert causes[name] in _one_error(b.err)


def test_a_tcp_node_without_tls_blocks_only_the_commands_that_use_it(tmp_path, remote_fleet):
    extra = remote_fleet.nodes_yaml() + "  clear:\n    url: tcp://127.0.0.1:2375\n"
    root = make_repo(tmp_path, "fx", ["steady"], nodes=extra)
    assert kabuild(root, "status", "fx").code == 0
    r = kabuild(root, "build", "fx", "--node", "clear")
    assert r.code == 2 and "tls: is required for tcp:// nodes" in _one_error(r.err)


@pytest.mark.emulation
def test_the_ssh_node_killed_mid_build_is_one_line_and_leaves_no_container(tmp_path, remote_fleet, engine):
    fleet = remote_fleet
    root = make_repo(tmp_path, "fx", ["sleeper"], arch="aarch64", control="local", experiment="ssh", fallback=None,
                     nodes=fleet.nodes_yaml(), timeout=600)
    proc = subprocess.Popen([sys.executable, "-m", "kabuild", "--root", str(root), "reproduce", "fx"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(3000):  # bounded: until both builds run (the image may be shipped first)
            if fleet.ssh_dockerd.containers() and running_of(engine, proc.pid):
                break
            if proc.poll() is not None:
                pytest.fail(f"kabuild ended before the builds ran: {proc.communicate()}")
            time.sleep(0.2)
        else:
            pytest.fail("the two build containers never started")
        fleet.sshd.kill()
        _out, err = proc.communicate(timeout=300)  # far less than the sleeper's 600 s
    finally:
        if proc.poll() is None:
            proc.kill()
        if fleet.sshd.proc is None or fleet.sshd.proc.poll() is not None:
            fleet.sshd.start()  # the node comes back for the next tests
    assert proc.returncode == 5, err
    line = _one_error(err)
    assert "build node ssh" in line and "was lost" in line, line
    assert not leftovers(engine)  # build 1 was stopped and removed at once
    runs = root / "build" / "fx" / "v1.0" / "runs"
    assert not (runs / "latest").exists()

    # The node is back: what the lost run left there is cleared, and named, by the next run.
    left = fleet.ssh_dockerd.containers()
    assert left, "the lost node still holds build 2's container (nothing could remove it while it was gone)"
    manifest = root / "fleet" / "fx.yaml"
    manifest.write_text(manifest.read_text().replace("timeout: 600", "timeout: 5"))
    assert kabuild(root, "promote", "fx").code == 0
    again = kabuild(root, "reproduce", "fx", "--json", timeout=HANG_GUARD)
    assert again.code == 4, again  # the sleeper outlives its 5 s now: a failed build, reported
    assert "node ssh: removed 1 container(s) an earlier kabuild run left" in again.err, again.err
    assert "removed 1 unfinished run(s)" in again.err
    assert fleet.ssh_dockerd.containers() == [] and not leftovers(engine)
    assert not [p for p in runs.iterdir() if p.name.endswith(".incomplete") or p.name.endswith(".partial")]


def test_the_dependency_layer_is_built_once_and_both_builds_use_its_image(tmp_path, engine, engine2):
    from kabuild.build import images
    from kabuild.config.manifest import Arch, Flavor

    root = make_repo(tmp_path, "fx", ["needs-bc"], control="local", experiment="local-2")
    # a layer made by an earlier session would be reused: remove this one (keyed by the base image ID,
    # so no other branch's layer has its tag), so the test sees it made on local and shipped to local-2
    base = images.inspect(engine, images.recipe(root, Flavor.DEBIAN, Arch.X86_64))
    if base is not None:
        tag = images.dependencies_tag(base, ("bc",))
        for e in (engine, engine2):
            with contextlib.suppress(Exception):
                e.client.images.remove(tag, force=True)
    r = kabuild(root, "reproduce", "fx", "--json", timeout=HANG_GUARD)
    assert r.code == 0, r
    data = json.loads(r.out)
    (pkg,) = data["packages"]
    (use,) = data["images"]
    assert ":deps-" in use["tag"] and any(p.startswith("bc ") for p in use["packages"]), use["tag"]
    assert pkg["image_id"] == use["id"] == _image_id(engine, use["tag"]) == _image_id(engine2, use["tag"])
    assert "installing build dependencies bc into a layer" in r.err and "on local (network on" in r.err
    assert "on local-2 (network" not in r.err and f"shipping {use['tag']}" in r.err
    # the reference records the toolchain really used: the layer's packages, bc included
    assert kabuild(root, "reference", "record", "fx").code == 0
    ref = yaml.safe_load((root / "references" / "fx" / "needs-bc" / "reference.yaml").read_text())
    assert ref["image"]["tag"] == use["tag"] and any(p.startswith("bc ") for p in ref["toolchain"])

